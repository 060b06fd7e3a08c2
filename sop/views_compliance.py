"""合规 pages of SOP: the template approval queue, forbidden phrases, blocked touches (with an
audited CSV export) and the guard policy. Compliance and admins only (the sidebar's "compliance"
entry); everyone else gets 404."""

import difflib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.access import require
from core.errors import ApplicationError
from core.exports import ExportAudit, export_response
from core.forms import form_add_application_error
from sop import content_services as cs
from sop import selectors
from sop.forms_content import BlockedFilterForm, GuardPolicyForm, PhraseForm, ReviewForm
from sop.models import ForbiddenPhrase, TemplateVersion
from sop.templates_lint import template_highlight, template_review


def _require_compliance(user) -> None:
    require(user, "compliance")


# --- approval queue ------------------------------------------------------------------------

def _diff_html(old: str, new: str):
    """Character diff of two bodies: removed struck through in red, added in green."""
    out = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(escape(new[b1:b2]))
            continue
        if a2 > a1:
            out.append(f'<del class="text-danger">{escape(old[a1:a2])}</del>')
        if b2 > b1:
            out.append(f'<ins class="text-success">{escape(new[b1:b2])}</ins>')
    return mark_safe("".join(out))  # noqa: S308 - every piece is escaped above


def _queue_items(user, forms: dict | None = None) -> list[dict]:
    items = selectors.approval_queue(user=user)
    for item in items:
        v, previous = item["v"], item["previous"]
        item.update(body=template_highlight(v.body, item["findings"]),
                    diff=_diff_html(previous.body, v.body) if previous else None,
                    form=(forms or {}).get(v.pk) or ReviewForm())
    return items


def _approvals_context(request, forms=None) -> dict:
    history = (TemplateVersion.objects.filter(status__in=[TemplateVersion.Status.APPROVED,
                                                          TemplateVersion.Status.REJECTED])
               .select_related("template", "reviewed_by", "created_by").order_by("-reviewed_at", "-pk")[:50])
    return {"items": _queue_items(request.user, forms), "history": history}


@login_required
def approvals(request):
    _require_compliance(request.user)
    return render(request, "sop/content/approvals.html", _approvals_context(request))


@login_required
@require_POST
def version_review(request, sop_review_version_id: int):
    _require_compliance(request.user)
    version = get_object_or_404(TemplateVersion, pk=sop_review_version_id)
    form = ReviewForm(request.POST)
    if form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            template_review(actor=request.user, version=version, approve=approve, note=form.cleaned_data["note"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("「%(t)s」v%(n)s 已%(d)s") % {
                "t": version.template.name, "n": version.number, "d": _("批准") if approve else _("驳回")})
            return redirect("sop:approvals")
    return render(request, "sop/content/approvals.html", _approvals_context(request, {version.pk: form}), status=400)


# --- forbidden phrases ---------------------------------------------------------------------

def _phrases_page(request, form, status=200):
    rows = list(ForbiddenPhrase.objects.select_related("created_by").order_by("-active", "phrase"))
    lists = [(kind, label, [r for r in rows if r.kind == kind]) for kind, label in ForbiddenPhrase.Kind.choices]
    return render(request, "sop/content/phrases.html", {"form": form, "lists": lists}, status=status)


@login_required
def phrases(request):
    _require_compliance(request.user)
    if request.method != "POST":
        return _phrases_page(request, PhraseForm())
    form = PhraseForm(request.POST)
    if form.is_valid():
        try:
            row = cs.forbidden_phrase_add(actor=request.user, phrase=form.cleaned_data["phrase"],
                                          reason=form.cleaned_data["reason"], kind=form.cleaned_data["kind"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("已加入%(list)s「%(p)s」") % {"list": row.get_kind_display(), "p": row.phrase})
            return redirect("sop:phrases")
    return _phrases_page(request, form, status=400)


@login_required
@require_POST
def phrase_toggle(request, sop_phrase_id: int):
    _require_compliance(request.user)
    row = cs.forbidden_phrase_set_active(actor=request.user, phrase_id=sop_phrase_id,
                                         active=request.POST.get("active") == "1")
    messages.success(request, (_("已启用「%(p)s」") if row.active else _("已停用「%(p)s」")) % {"p": row.phrase})
    return redirect("sop:phrases")


# --- blocked touches -----------------------------------------------------------------------

def _blocked_filters(request):
    form = BlockedFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    return form, filters


@login_required
def blocked(request):
    _require_compliance(request.user)
    form, filters = _blocked_filters(request)
    page = Paginator(cs.blocked_step_runs(user=request.user, filters=filters), 50).get_page(request.GET.get("page"))
    rows = []
    for r in page.object_list:
        name = r.enrollment.customer.name
        masked = cs.customer_masked_name(name)
        content = r.touch.content if r.touch_id and r.touch else ""
        rows.append({"run": r, "reason": cs.problem_reason_label(r), "who": masked,
                     "content": content.replace(name, masked) if name else content})
    query = request.GET.copy()
    query.pop("page", None)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "sop/content/blocked.html",
                  {"form": form, "page": page, "rows": rows, "query": query.urlencode(),
                   "summary": cs.blocked_summary(user=request.user)}, status=status)


@login_required
def blocked_export(request):
    """CSV of the filtered list (customers masked); the export itself is audited."""
    _require_compliance(request.user)
    form, filters = _blocked_filters(request)

    def rows():
        for run in cs.blocked_step_runs(user=request.user, filters=filters).iterator(chunk_size=2000):
            customer = run.enrollment.customer
            yield [timezone.localtime(run.created_at).strftime("%Y-%m-%d %H:%M"), customer.external_id,
                   cs.customer_masked_name(customer.name), customer.mobile_masked,
                   run.enrollment.journey.name, run.step_id, run.step_type, run.status,
                   run.block_reason, cs.problem_reason_label(run)]

    return export_response(
        filename="sop-blocked-touches.csv",
        header=["time", "customer", "name", "mobile", "journey", "step", "channel_step", "status",
                "reason_code", "reason"],
        rows=rows(),
        audit=ExportAudit(actor=request.user, action="sop.blocked_export", target_type="step_run",
                          ip_address=request.META.get("REMOTE_ADDR"),
                          details={k: str(getattr(v, "pk", v)) for k, v in filters.items() if v}),
    )


# --- guard policy --------------------------------------------------------------------------

@login_required
def guards(request):
    _require_compliance(request.user)
    policy = cs.guard_policy_get()
    if request.method != "POST":
        form = GuardPolicyForm(initial=GuardPolicyForm.initial_from(policy))
        return render(request, "sop/content/guards.html", {"form": form, "policy": policy})
    form = GuardPolicyForm(request.POST)
    if form.is_valid():
        try:
            cs.guard_policy_save(actor=request.user, quiet_start=form.cleaned_data["quiet_start"],
                                 quiet_end=form.cleaned_data["quiet_end"], caps=form.caps())
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("触达规则已保存"))
            return redirect("sop:guards")
    return render(request, "sop/content/guards.html", {"form": form, "policy": policy}, status=400)
