"""合规: the audit log with filters and an audited CSV export."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from core.access import require
from core.audit import audit_action_label, audit_details_text
from core.exports import ExportAudit, export_response
from core.selectors import audit_actions, audit_list


class AuditFilterForm(forms.Form):
    actor = forms.CharField(label=_("操作人"), required=False, max_length=150)
    target = forms.CharField(label=_("客户号/对象"), required=False, max_length=128)
    action = forms.CharField(label=_("动作"), required=False, max_length=64)
    since = forms.DateField(label=_("从"), required=False)
    until = forms.DateField(label=_("到"), required=False)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", _("结束日期不能早于开始日期"))
        return data


def _require_audit_role(user):
    require(user, "compliance")


@login_required
def compliance_index(request):
    _require_audit_role(request.user)
    form = AuditFilterForm(request.GET or None)
    rows = audit_list(filters=form.cleaned_data if form.is_valid() else {})
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    from sop.content_services import blocked_summary
    from sop.models import TemplateVersion

    sop_summary = {"pending": TemplateVersion.objects.filter(status=TemplateVersion.Status.PENDING).count(),
                   "blocked": blocked_summary(user=request.user)}
    return render(request, "core/audit_log.html",
                  {"form": form, "page": page, "actions": audit_actions(), "query": query.urlencode(),
                   "sop_summary": sop_summary})


@login_required
def audit_export(request):
    _require_audit_role(request.user)
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}

    def rows():
        for row in audit_list(filters=filters).iterator(chunk_size=2000):
            yield [timezone.localtime(row.created_at).isoformat(), row.actor_label, row.action,
                   audit_action_label(row.action), row.target_type, row.target_id, row.reason, row.ip_address or "",
                   pgettext("punctuation", "；").join(
                       f"{label} {value}".strip() for label, value in audit_details_text(row.details))]

    return export_response(
        filename="audit-log.csv",
        header=["time", "actor", "action", "action_label", "target_type", "target", "reason", "ip", "details"],
        rows=rows(),
        audit=ExportAudit(actor=request.user, action="audit.export", target_type="audit_log",
                          ip_address=request.META.get("REMOTE_ADDR"),
                          details={k: str(v) for k, v in filters.items() if v}),
    )
