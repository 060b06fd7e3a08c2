"""分析 pages: opening funnel, retention cohorts, magic number, channel evaluation — each a chart, a table and a
CSV of that table, for the viewer's scope (dashboards/analyses/common.py). They read only the summary tables
kept by dashboards/analyses/refresh.py. Bad picker values answer 400 with the message next to the picker."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django.views.decorators.http import require_GET, require_POST

from core.errors import ApplicationError
from core.exports import export_response
from dashboards.analyses import channels, cohorts, funnel, magic
from dashboards.analyses.common import FilterForm, picker_context, require_analyses
from dashboards.analyses.refresh import analyses_last_refresh

PAGES = [("funnel", gettext_lazy("开户漏斗")), ("cohorts", gettext_lazy("留存队列")), ("magic", gettext_lazy("魔法数字")),
         ("channels", gettext_lazy("渠道评估"))]


def _choice(request, name: str, options: dict, default: str) -> tuple[str, str | None]:
    value = request.GET.get(name) or default
    if value not in options:
        return default, _("%(name)s 的取值 %(v)s 无效，可选：%(opts)s") % {
            "name": name, "v": value, "opts": pgettext("punctuation", "、").join(
                _("%(name)s（%(code)s）") % {"name": k, "code": v} for k, v in options.items())}
    return value, None


def _render(request, *, page: str, form: FilterForm, extra_error: str | None, build, csv_rows, csv_name: str,
            context: dict | None = None, as_csv: bool = False):
    """The page (or its CSV): 400 with the errors when a picker is bad, else the report ``build(filters)``."""
    valid = form.is_valid()
    error = extra_error or (None if valid else form.error_text())
    if as_csv:
        if error:
            return _csv_error(error)
        header, rows = csv_rows(build(form.cleaned_data["filters"]))
        # aggregates only (no customer rows), so no audit; small tables, built in memory
        return export_response(filename=f"{csv_name}.csv", header=header, rows=rows, audit=None, streaming=False)
    ctx = {"page": page, "pages": [(key, label, reverse(f"dashboards:analyses_{key}")) for key, label in PAGES],
           "error": error, "refreshed": analyses_last_refresh(), **picker_context(form), **(context or {})}
    if not error:
        filters = form.cleaned_data["filters"]
        ctx.update(filters=filters, report=build(filters), query=urlencode(filters.query()))
        ctx["csv_url"] = reverse(f"dashboards:analyses_{page}_csv") + "?" + request.GET.urlencode()
    return render(request, f"dashboards/analyses/{page}.html", ctx, status=400 if error else 200)


def _csv_error(error: str):
    from django.http import HttpResponse

    return HttpResponse(error, status=400, content_type="text/plain; charset=utf-8")


# --- funnel --------------------------------------------------------------------------------------

@login_required
@require_GET
def funnel_page(request, as_csv=False):
    """The page, or its table as CSV (the ``.csv`` URL passes ``as_csv``)."""
    require_analyses(request.user)
    form = FilterForm(request.GET, user=request.user)
    return _render(request, page="funnel", form=form, extra_error=None, build=funnel.funnel_report,
                   csv_rows=funnel.funnel_csv_rows, csv_name="opening-funnel", as_csv=as_csv)



@login_required
@require_POST
def funnel_dropouts(request):
    """「流失客户生成客群」: the drop-outs of one step in the picked filters become a saved segment."""
    require_analyses(request.user)
    form = FilterForm(request.POST, user=request.user)
    back = reverse("dashboards:analyses_funnel")
    if not form.is_valid():
        messages.error(request, form.error_text())
        return redirect(back)
    filters = form.cleaned_data["filters"]
    back += "?" + urlencode(filters.query())
    try:
        segment = funnel.dropouts_segment_create(actor=request.user, stage=request.POST.get("stage", ""), filters=filters)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, _("已生成客群「%(name)s」，成员正在计算。可在下方「批量操作」中加入召回 SOP 或派发回访任务。")
                     % {"name": segment.name})
    return redirect("segments:detail", segment_id=segment.pk)


# --- cohorts -------------------------------------------------------------------------------------

@login_required
@require_GET
def cohorts_page(request, as_csv=False):
    require_analyses(request.user)
    measure, error = _choice(request, "measure", cohorts.MEASURES, "traded")
    form = FilterForm(request.GET, user=request.user, default_months=12)
    return _render(request, page="cohorts", form=form, extra_error=error,
                   build=lambda f: cohorts.cohort_report(f, measure=measure), csv_rows=cohorts.cohort_csv_rows,
                   csv_name=f"retention-cohorts-{measure}", as_csv=as_csv,
                   context={"measure": measure, "measures": [(k, str(v)) for k, v in cohorts.MEASURES.items()]})



# --- magic number --------------------------------------------------------------------------------

@login_required
@require_GET
def magic_page(request, as_csv=False):
    require_analyses(request.user)
    behaviour, error = _choice(request, "behaviour", magic.BEHAVIOURS, "news")
    outcome, error2 = _choice(request, "outcome", magic.OUTCOMES, "second_trade")
    form = FilterForm(request.GET, user=request.user, default_months=24)
    return _render(request, page="magic", form=form, extra_error=error or error2,
                   build=lambda f: magic.magic_report(f, behaviour=behaviour, outcome=outcome),
                   csv_rows=magic.magic_csv_rows, csv_name=f"magic-number-{behaviour}-{outcome}", as_csv=as_csv,
                   context={"behaviour": behaviour, "outcome": outcome, "min_bucket": magic.MIN_BUCKET,
                            "min_jump": round(magic.MIN_JUMP * 100),
                            "behaviours": [(k, str(v)) for k, v in magic.BEHAVIOURS.items()],
                            "outcomes": [(k, str(v)) for k, v in magic.OUTCOMES.items()]})



# --- channels ------------------------------------------------------------------------------------

@login_required
@require_GET
def channels_page(request, as_csv=False):
    require_analyses(request.user)
    form = FilterForm(request.GET, user=request.user, default_months=12)
    return _render(request, page="channels", form=form, extra_error=None, build=channels.channel_report,
                   csv_rows=channels.channel_csv_rows, csv_name="channel-evaluation", as_csv=as_csv)



# --- refresh -------------------------------------------------------------------------------------

@login_required
@require_POST
def refresh_request(request):
    """「立即刷新」: queue an incremental refresh of the summary tables (Celery ``dashboards.analyses_refresh``)."""
    require_analyses(request.user)
    from dashboards.tasks_analyses import analyses_refresh_task

    transaction.on_commit(analyses_refresh_task.delay)
    messages.info(request, _("已开始刷新分析数据，通常一两分钟内完成，请稍后刷新页面。"))
    page = request.POST.get("page") if request.POST.get("page") in dict(PAGES) else "funnel"
    return redirect(f"dashboards:analyses_{page}")
