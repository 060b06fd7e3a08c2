"""价值分层 pages: tiers with counts, assets and strategies, the transition matrix and run history;
重新计算 with a progress bar polled by htmx; editing a tier's service strategy.

Operators, HQ and branch managers and admins see the page (404 for everyone else), counts in
their own scope; operators, HQ managers and admins start runs; operators and admins edit strategies.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache

from core.errors import ApplicationError
from core.forms import form_add_application_error
from tagging import tiers
from tagging.models import TierDefinition, TierRun, TierScheme


class TierStrategyForm(forms.Form):
    """Only the shape; the rules (required fields, no promised returns) live in tiers.tier_strategy_update."""

    channels = forms.CharField(label=gettext_lazy("服务渠道"), required=False,
                               help_text=gettext_lazy("如：专属投顾 1 对 1 企业微信、电话"))
    cadence = forms.CharField(label=gettext_lazy("服务频率"), required=False, help_text=gettext_lazy("如：每周"))
    products = forms.CharField(label=gettext_lazy("适配产品"), required=False,
                               widget=forms.Textarea(attrs={"rows": 2}))
    activities = forms.CharField(label=gettext_lazy("适配活动"), required=False,
                                 widget=forms.Textarea(attrs={"rows": 2}))
    suggested_sop = forms.CharField(label=gettext_lazy("建议 SOP"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            field.widget.attrs.update({"class": "form-control",
                                       "maxlength": TierDefinition._meta.get_field(name).max_length})

    def add_error(self, field, error):
        super().add_error(field, error)
        if field in self.fields:
            self.fields[field].widget.attrs["class"] += " is-invalid"


def _require_viewer(user) -> None:
    if getattr(user, "role", None) not in tiers.TIER_VIEW_ROLES:
        raise Http404("tiers page not available for this role")


def _method_label(method: str) -> str:
    try:
        return str(TierScheme.Method(method).label)
    except ValueError:
        return method


def _results_context(user) -> dict:
    overview = tiers.tier_overview(user=user)
    matrix = tiers.tier_transition_matrix(user=user)
    matrix["rows"] = [row for row in matrix["rows"] if row["total"]]  # dense: only tiers someone came from
    for row in matrix["rows"]:
        for cell in row["cells"]:
            cell["heat"] = round(cell["n"] / matrix["max"], 2) if matrix["max"] else 0
    runs = tiers.tier_run_history(user=user)
    for run in runs:
        run.method_label = _method_label(run.method)
        ms = run.duration_ms
        run.duration_label = "—" if ms is None else (f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s")
    latest = overview["latest_run"]
    chart = [{"code": t["code"], "label": t["label"], "colour": t["colour"], "count": t["count"],
              "assets_wan": round(float(t["assets"]) / 10_000, 2)} for t in overview["tiers"]]
    return {"overview": overview, "matrix": matrix, "runs": runs, "chart": chart,
            "latest_method": _method_label(latest.method) if latest else "",
            "can_edit": user.role in tiers.TIER_STRATEGY_ROLES}


@never_cache
@login_required
def tier_page(request):
    """GET: the page. POST (htmx, 重新计算): queue a full run and answer with its progress bar."""
    _require_viewer(request.user)
    if request.method == "POST":
        if request.user.role not in tiers.TIER_RUN_ROLES:
            raise PermissionDenied
        try:
            run = tiers.tier_run_start(actor=request.user)
        except ApplicationError as exc:  # shown where the bar would be; 200 so htmx swaps it in
            return render(request, "tagging/partials/tier_run_status.html",
                          {"run": tiers.tier_run_running(), "error": exc.message})
        return render(request, "tagging/partials/tier_run_status.html", {"run": run})
    context = _results_context(request.user)
    context.update({"running": tiers.tier_run_running(), "can_run": request.user.role in tiers.TIER_RUN_ROLES})
    return render(request, "tagging/tiers.html", context)


@never_cache
@login_required
def tier_run_status(request, run_id: int):
    """The progress bar of one run (polled every second while it runs); when it is done, the fresh
    results replace the page's tables and chart out of band."""
    run = tiers.tier_run_get_for_user(user=request.user, run_id=run_id)
    context = {"run": run}
    if run.status == TierRun.Status.DONE:
        context.update(_results_context(request.user), oob=True)
    return render(request, "tagging/partials/tier_run_status.html", context)


@login_required
def tier_strategy_edit(request, code: str):
    definition = tiers.tier_definition_get_for_user(user=request.user, code=code)
    if request.method == "POST":
        form = TierStrategyForm(request.POST)
        if form.is_valid():
            try:
                tiers.tier_strategy_update(actor=request.user, definition=definition, data=form.cleaned_data)
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                messages.success(request, _("已保存「%(label)s」的服务策略") % {"label": definition.label})
                return redirect("tagging:tiers")
        return render(request, "tagging/tier_strategy_edit.html", {"form": form, "definition": definition},
                      status=400)
    form = TierStrategyForm(initial={f: getattr(definition, f) for f in tiers.STRATEGY_FIELDS})
    return render(request, "tagging/tier_strategy_edit.html", {"form": form, "definition": definition})
