"""Analyses about people and results: 流失预警 (churn warning), 投顾跟进 (advisor follow-up leaderboard) and
SOP 效果汇总 (SOP results across journeys). Each is a chart, a table and a CSV of the same rows, for the
viewer's data scope, read from precomputed scores and summaries (dashboards/churn.py, advisors.py,
sop_rollup.py), so a page costs the same at a million clients. The CSVs go through core/exports.py.

Who: the churn page is for everyone with the dashboard (advisors see their own clients); the leaderboard
and the SOP roll-up are for managers and operators (advisors get 404, as for any page not theirs).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_POST

from core.access import may, require
from core.errors import ApplicationError
from core.exports import ExportAudit, export_response
from core.redirects import redirect_back
from core.scoping import scope_for
from core.services import audit_record
from dashboards import advisors as advisor_stats
from dashboards import churn, churn_actions, sop_rollup

PAGE_SIZE = 50
LEVELS = {"high": ["high"], "medium": ["medium"], "at_risk": ["high", "medium"]}


def _require(user, *, advisors_allowed: bool) -> None:
    require(user, "dashboard" if advisors_allowed else "analyses")


def _int_param(request, name: str) -> int | None:
    """A whole-number query parameter; anything else counts as not given (the page shows its default)."""
    raw = (request.GET.get(name) or "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


# --- churn warning ------------------------------------------------------------------------------------

def _churn_filters(request) -> tuple[str, int | None]:
    level = request.GET.get("level") or "high"
    if level not in LEVELS:
        level = "high"
    advisor_id = _int_param(request, "advisor")
    if advisor_id is None and (request.GET.get("advisor") or "").strip():
        raise Http404("bad advisor")
    if advisor_id is not None:  # another scope's advisor: as if the page did not exist
        try:
            churn_actions.advisor_in_scope(user=request.user, advisor_id=advisor_id)
        except ApplicationError as exc:
            raise Http404("advisor out of scope") from exc
    return level, advisor_id


def _client_rows(scores, *, personal: bool, tiers: dict) -> list[dict]:
    rows = []
    for s in scores:
        c = s.customer
        tier = tiers.get(getattr(getattr(c, "tier", None), "code", None))
        rows.append({"id": c.pk, "external_id": c.external_id, "name": churn.name_shown(c.name, personal=personal),
                     "mobile": c.mobile_masked or "", "branch": c.branch.name, "advisor": str(c.advisor or ""),
                     "tier": tier.label if tier else "", "tier_colour": tier.colour if tier else "secondary",
                     "score": s.score, "level": s.level, "level_label": s.get_level_display(), "reasons": s.reasons,
                     "computed_at": s.computed_at})
    return rows


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _backtest_shown(backtest: dict | None) -> dict | None:
    """The stored backtest with its rates as the page prints them (12.3%)."""
    if not backtest:
        return backtest
    shown = {**backtest, "deciles": [{**d, "rate_pct": _pct(d["rate"])} for d in backtest["deciles"]]}
    for key in ("precision_high", "recall_high", "base_rate", "precision_at_risk", "recall_at_risk"):
        shown[f"{key}_pct"] = _pct(backtest[key])
    for level in ("high", "medium", "low"):
        shown[f"{level}_rate_pct"] = _pct(backtest["levels"][level]["rate"])
    return shown


@login_required
def churn_page(request):
    _require(request.user, advisors_allowed=True)
    from tagging.tiers import tier_definitions

    level, advisor_id = _churn_filters(request)
    page = max(1, _int_param(request, "page") or 1)
    summary = churn.churn_summary(user=request.user)
    scores = churn.at_risk_clients(user=request.user, levels=LEVELS[level], advisor_id=advisor_id)
    chunk = list(scores[(page - 1) * PAGE_SIZE: page * PAGE_SIZE + 1])
    personal = scope_for(request.user).personal_data
    clients = _client_rows(chunk[:PAGE_SIZE], personal=personal, tiers=tier_definitions())
    if advisor_id is not None:
        row = next((r for r in summary["advisors"] if r["advisor_id"] == advisor_id), None)
        listed_total = sum(row[lv] for lv in LEVELS[level]) if row else 0
    else:
        listed_total = sum(summary["levels"][lv] for lv in LEVELS[level])
    backtest = _backtest_shown(churn.churn_backtest())
    chart = [{"label": f"{b * 10}–{b * 10 + 9 if b < 9 else 100}", "count": n, "level": churn.level_of_bucket(b)}
             for b, n in enumerate(summary["buckets"])]
    context = {
        "summary": summary, "clients": clients, "level": level, "advisor_id": advisor_id, "page": page,
        "has_next": len(chunk) > PAGE_SIZE, "listed_total": listed_total,
        "advisor_name": str(churn_actions.advisor_in_scope(user=request.user, advisor_id=advisor_id))
        if advisor_id else "",
        "advisor_rows": summary["advisors"][:50], "chart": chart, "tab": "churn",
        "backtest": backtest, "backtest_deciles": backtest["deciles"] if backtest else [],
        "journeys": churn_actions.live_journeys(), "can_recompute": may(request.user, "analyses.recompute"),
        "high_from": churn.HIGH_FROM, "medium_from": churn.MEDIUM_FROM, "reason_codes": churn.REASON_CODES,
        "query": request.GET.urlencode(),
    }
    return render(request, "dashboards/people/churn.html", context)


@login_required
def churn_csv(request):
    _require(request.user, advisors_allowed=True)
    from tagging.tiers import tier_definitions

    level, advisor_id = _churn_filters(request)
    personal = scope_for(request.user).personal_data
    scores = churn.at_risk_clients(user=request.user, levels=LEVELS[level], advisor_id=advisor_id)
    tiers = tier_definitions()

    def rows():
        for s in scores.iterator(chunk_size=2000):
            r = _client_rows([s], personal=personal, tiers=tiers)[0]
            yield [r["external_id"], r["name"], r["mobile"], r["branch"], r["advisor"], r["tier"], r["score"],
                   r["level_label"], churn.reasons_text(r["reasons"])]

    header = [_("客户号"), _("姓名"), _("手机号"), _("营业部"), _("投顾"), _("分层"), _("流失风险分"), _("风险等级"), _("原因")]
    return export_response(
        filename=f"churn-{level}-{timezone.localdate():%Y%m%d}.csv", header=header, rows=rows(),
        audit=ExportAudit(actor=request.user, action="churn.export", target_type="churn", target_id=level,
                          details={"level": level, "advisor": advisor_id, "masked": True}))


def _action_answer(request, *, ok: str | None = None, error: ApplicationError | None = None):
    if request.htmx:
        return render(request, "dashboards/people/partials/action_result.html",
                      {"ok": ok, "error": error}, status=400 if error else 200)
    if error:
        messages.error(request, error.message)
    else:
        messages.success(request, ok)
    return redirect_back(request, reverse("dashboards:churn"))


@login_required
@require_POST
def churn_tasks(request):
    _require(request.user, advisors_allowed=True)
    try:
        result = churn_actions.churn_tasks_create(actor=request.user, customer_ids=request.POST.getlist("customers"),
                                                  advisor_id=request.POST.get("advisor"))
    except ApplicationError as exc:
        return _action_answer(request, error=exc)
    ok = _("已创建 %(created)s 个跟进任务（今天已有任务 %(already)s 位，无投顾 %(none)s 位）") % {
        "created": result["created"], "already": result["already"], "none": result["no_advisor"]}
    return _action_answer(request, ok=ok)


@login_required
@require_POST
def churn_enroll(request):
    _require(request.user, advisors_allowed=True)
    try:
        result = churn_actions.churn_enroll(actor=request.user, journey_id=request.POST.get("journey"),
                                            customer_ids=request.POST.getlist("customers"),
                                            advisor_id=request.POST.get("advisor"))
    except ApplicationError as exc:
        return _action_answer(request, error=exc)
    ok = _("%(entered)s 位客户已加入「%(journey)s」（共选 %(total)s 位，已在旅程中或今天已加入的跳过）") % {
        "entered": result["entered"], "journey": result["journey"], "total": result["customers"]}
    return _action_answer(request, ok=ok)


@login_required
@require_POST
def churn_refresh(request):
    """Queue the scoring (``what=scores``) or the backtest (``what=backtest``) on the workers."""
    _require(request.user, advisors_allowed=False)
    if not may(request.user, "analyses.recompute"):
        raise Http404("not for this role")
    from dashboards import tasks_people

    what = request.POST.get("what")
    if what not in ("scores", "backtest"):
        return _action_answer(request, error=ApplicationError("invalid", _("未知的计算类型"), [{"field": "what"}]))
    task = tasks_people.churn_scores if what == "scores" else tasks_people.churn_backtest
    task.delay_on_commit()
    audit_record(actor=request.user, action=f"churn.{what}_queued", target_type="churn")
    return _action_answer(request, ok=_("已提交计算，完成后刷新页面即可看到新结果（百万客户约需数分钟）"))


def _cells(row: dict, columns) -> list[tuple[str, str]]:
    """(column, text) as the table shows it and the CSV writes it: counts with separators off, rates with
    one decimal, — for nothing to divide by."""
    return [(key, "—" if row.get(key) is None else str(row[key])) for key, _label in columns]


def _csv_values(row: dict, columns) -> list:
    """The same cells for the CSV, numbers as numbers (a negative uplift must not read as text)."""
    return ["—" if row.get(key) is None else row[key] for key, _label in columns]


# --- advisor follow-up --------------------------------------------------------------------------------

def _leaderboard(request) -> dict:
    days = _int_param(request, "days") or advisor_stats.DEFAULT_PERIOD
    if days not in advisor_stats.PERIODS:
        days = advisor_stats.DEFAULT_PERIOD
    by = request.GET.get("by") if scope_for(request.user).everything else "advisor"
    by = by if by in ("advisor", "branch") else "advisor"
    sort = request.GET.get("sort") or "follow_rate"
    board = advisor_stats.advisor_leaderboard(user=request.user, days=days, by=by, sort=sort,
                                              descending=request.GET.get("dir") != "asc")
    for row in [*board["rows"], board["totals"]]:
        row["cells"] = _cells(row, ADVISOR_COLUMNS)
    return board


ADVISOR_COLUMNS = [
    ("received", gettext_noop("商机标签")), ("followed_48h", gettext_noop("48h 内跟进")),
    ("follow_rate", gettext_noop("48h 跟进率 %")), ("converted", gettext_noop("转化")),
    ("conversion_rate", gettext_noop("转化率 %")), ("tasks_due", gettext_noop("到期任务")),
    ("tasks_on_time", gettext_noop("按时完成")), ("on_time_rate", gettext_noop("按时率 %")),
    ("tasks_overdue", gettext_noop("逾期")), ("touches_out", gettext_noop("触达")),
    ("replies_in", gettext_noop("回复")), ("reply_rate", gettext_noop("回复率 %")),
]


@login_required
def advisors_page(request):
    _require(request.user, advisors_allowed=False)
    board = _leaderboard(request)
    chart = [{"name": r["name"], "received": r["received"], "followed": r["followed_48h"], "converted": r["converted"]}
             for r in board["rows"] if r["received"]][:20]
    context = {"board": board, "columns": [(k, _(label)) for k, label in ADVISOR_COLUMNS],
               "periods": advisor_stats.PERIODS, "can_by_branch": scope_for(request.user).everything,
               "chart": chart, "query": request.GET.urlencode(), "tab": "advisors"}
    return render(request, "dashboards/people/advisors.html", context)


@login_required
def advisors_csv(request):
    _require(request.user, advisors_allowed=False)
    board = _leaderboard(request)
    header = [_("营业部"), _("投顾") if board["by"] == "advisor" else _("营业部汇总"),
              *[_(label) for _key, label in ADVISOR_COLUMNS]]
    rows = [[r["branch"], r["name"], *_csv_values(r, ADVISOR_COLUMNS)] for r in board["rows"]]
    return export_response(
        filename=f"advisor-follow-up-{board['days']}d-{timezone.localdate():%Y%m%d}.csv", header=header, rows=rows,
        audit=ExportAudit(actor=request.user, action="advisors.export", target_type="advisors",
                          target_id=str(board["days"]), details={"rows": len(rows), "by": board["by"]}))


@login_required
@require_POST
def summaries_refresh(request):
    """Queue the follow-up and SOP summaries now instead of waiting for beat."""
    _require(request.user, advisors_allowed=False)
    from dashboards import tasks_people

    tasks_people.people_summaries.delay_on_commit()
    messages.success(request, _("已提交刷新，约一分钟后刷新页面即可看到最新数字"))
    return redirect_back(request, reverse("dashboards:advisors"))


# --- SOP roll-up --------------------------------------------------------------------------------------

SOP_COLUMNS = [
    ("enrolled", gettext_noop("进入")), ("active", gettext_noop("进行中")),
    ("finished", gettext_noop("已结束")), ("holdout", gettext_noop("对照组")),
    ("touches", gettext_noop("触达")), ("sent", gettext_noop("已发送")),
    ("delivered", gettext_noop("已送达")), ("replied", gettext_noop("已回复")),
    ("blocked", gettext_noop("已拦截")), ("failed", gettext_noop("失败")),
    ("treated_rate", gettext_noop("实验组达成 %")), ("holdout_rate", gettext_noop("对照组达成 %")),
    ("uplift", gettext_noop("提升 pp")), ("touches_per_conversion", gettext_noop("触达/转化")),
    ("touches_per_incremental", gettext_noop("触达/增量转化")),
]


def _sop_data(request) -> dict:
    data = sop_rollup.sop_rollup(user=request.user)
    for row in [*data["rows"], data["totals"]]:
        row["cells"] = _cells(row, SOP_COLUMNS)
    return data


@login_required
def sop_rollup_page(request):
    _require(request.user, advisors_allowed=False)
    data = _sop_data(request)
    chart = [{"name": r["name"], "treated": r["treated_rate"], "holdout": r["holdout_rate"]}
             for r in data["rows"] if r["enrolled"]][:20]
    context = {"data": data, "columns": [(k, _(label)) for k, label in SOP_COLUMNS],
               "chart": chart, "tab": "sop"}
    return render(request, "dashboards/people/sop_rollup.html", context)


@login_required
def sop_rollup_csv(request):
    _require(request.user, advisors_allowed=False)
    data = _sop_data(request)
    header = [_("旅程"), _("状态"), _("目标"), *[_(label) for _key, label in SOP_COLUMNS]]
    rows = [[r["name"], r["status"], r["goal"], *_csv_values(r, SOP_COLUMNS)] for r in data["rows"]]
    return export_response(
        filename=f"sop-results-{timezone.localdate():%Y%m%d}.csv", header=header, rows=rows,
        audit=ExportAudit(actor=request.user, action="sop_rollup.export", target_type="sop",
                          details={"rows": len(rows)}))
