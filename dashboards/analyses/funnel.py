"""Account-opening funnel: of the clients who signed up (entered the funnel) in the period, how many reached each
step — ID upload → password → video verification → opened → funded — by channel and branch, and the drop-outs
of a step as a saved segment for a recall SOP.

A client's ``funnel_stage`` is the furthest step reached, so "reached step N" is ``stage ≥ N`` and the drop-outs
of step N (reached N, not N+1) are exactly the clients whose stage is N.
"""

from datetime import date, datetime, time, timedelta

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import ApplicationError
from customers.models import FUNNEL_ORDER, FunnelStage
from dashboards.analyses.common import Filters, channel_label, month_add, month_label, percent, rate
from dashboards.models import AcquisitionMonthly

STEP_COLUMNS = ["signups", "password_set", "video_verified", "opened", "funded"]  # one per FUNNEL_ORDER step


def funnel_report(filters: Filters) -> dict:
    """Steps (label, reached, step conversion, overall conversion, drop-outs) and the same per channel."""
    rows = filters.apply(AcquisitionMonthly.objects.all())
    totals = rows.aggregate(**{c: Sum(c) for c in STEP_COLUMNS})
    reached = [totals[c] or 0 for c in STEP_COLUMNS]
    steps = []
    for i, stage in enumerate(FUNNEL_ORDER):
        nxt = reached[i + 1] if i + 1 < len(reached) else None
        steps.append({
            "index": i, "stage": stage, "label": str(FunnelStage(stage).label), "reached": reached[i],
            "step_rate": rate(reached[i], reached[i - 1]) if i else None,
            "overall_rate": rate(reached[i], reached[0]),
            "dropouts": None if nxt is None else reached[i] - nxt,
            "next_label": str(FunnelStage(FUNNEL_ORDER[i + 1]).label) if nxt is not None else "",
        })
        steps[-1].update(step_rate_text=percent(steps[-1]["step_rate"]), overall_rate_text=percent(steps[-1]["overall_rate"]))
    by_channel = []
    for row in rows.order_by().values("channel").annotate(**{c: Sum(c) for c in STEP_COLUMNS}).order_by("-signups"):
        counts = [row[c] or 0 for c in STEP_COLUMNS]
        by_channel.append({"channel": row["channel"], "label": channel_label(row["channel"]), "counts": counts,
                           "step_rates": [percent(rate(counts[i], counts[i - 1])) for i in range(1, len(counts))],
                           "overall_rate": percent(rate(counts[-1], counts[0]))})
    return {"steps": steps, "by_channel": by_channel, "signups": reached[0]}


def funnel_csv_rows(report: dict) -> tuple[list[str], list[list]]:
    header = [_("步骤"), _("到达人数"), _("步骤转化率"), _("累计转化率"), _("流失人数（未到下一步）")]
    rows = [[s["label"], s["reached"], percent(s["step_rate"]), percent(s["overall_rate"]),
             "" if s["dropouts"] is None else s["dropouts"]] for s in report["steps"]]
    return header, rows


# --- drop-outs → segment -----------------------------------------------------------------------------

SIGNUP_RULE_TYPE = "signup_date"


def _signup_validate(node, path):
    from segments.rules import RuleError

    extra = set(node) - {"type", "not", "op", "value"}
    if extra:
        raise RuleError(f"{path}.{sorted(extra)[0]}", f"条件类型 {SIGNUP_RULE_TYPE} 没有字段 {sorted(extra)[0]!r}")
    if node.get("op") != "between":
        raise RuleError(f"{path}.op", "应为 between")
    value = node.get("value")
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{path}.value", "应为 [起始日期, 截止日期]（YYYY-MM-DD）")
    try:
        low, high = (date.fromisoformat(v) for v in value)
    except ValueError:
        raise RuleError(f"{path}.value", "日期格式应为 YYYY-MM-DD") from None
    if low > high:
        raise RuleError(f"{path}.value", "起始日期不能晚于截止日期")


def _signup_compile(node, now):
    from django.db.models import Q

    low, high = (date.fromisoformat(v) for v in node["value"])
    tz = timezone.get_default_timezone()
    return Q(created_at__gte=timezone.make_aware(datetime.combine(low, time.min), tz),
             created_at__lt=timezone.make_aware(datetime.combine(high + timedelta(days=1), time.min), tz))


def signup_rule_register() -> None:
    """Segments gain the condition ``{"type": "signup_date", "op": "between", "value": [from, to]}``: the client
    signed up (entered the opening funnel, Customer.created_at) between two dates, inclusive, Beijing time."""
    from segments.rules import CONDITION_EXTENSIONS

    CONDITION_EXTENSIONS[SIGNUP_RULE_TYPE] = (_signup_validate, _signup_compile, gettext_lazy("注册日期"))


def dropouts_rule(*, stage: str, filters: Filters) -> dict:
    """Clients who reached ``stage`` but not the next step, in the picked channel, branch and sign-up period."""
    last_day = month_add(filters.end, 1) - timedelta(days=1)
    rules = [{"type": "attribute", "field": "funnel_stage", "op": "eq", "value": stage},
             {"type": SIGNUP_RULE_TYPE, "op": "between", "value": [filters.start.isoformat(), last_day.isoformat()]}]
    if filters.channel is not None:
        rules.append({"type": "attribute", "field": "channel", "op": "eq", "value": filters.channel})
    if filters.branch is not None:
        rules.append({"type": "attribute", "field": "branch", "op": "eq", "value": filters.branch.code})
    return {"op": "and", "rules": rules}


def dropouts_segment_create(*, actor, stage: str, filters: Filters):
    """A saved segment of a step's drop-outs (segments.services.segment_create: audited, rebuilt on commit)."""
    from segments.services import segment_create

    if stage not in FUNNEL_ORDER[:-1]:
        raise ApplicationError("invalid", _("请选择有下一步的漏斗步骤"), [{"field": "stage", "message": _("未知步骤")}])
    nxt = FUNNEL_ORDER[FUNNEL_ORDER.index(stage) + 1]
    period = (month_label(filters.start) if filters.start == filters.end
              else f"{month_label(filters.start)}~{month_label(filters.end)}")
    parts = [_("开户流失：%(a)s→%(b)s") % {"a": FunnelStage(stage).label, "b": FunnelStage(nxt).label}]
    if filters.channel is not None:
        parts.append(channel_label(filters.channel))
    if filters.branch is not None:
        parts.append(filters.branch.name)
    parts.append(period)
    name = " · ".join(str(p) for p in parts)[:100]
    description = _("开户漏斗中完成「%(a)s」但未完成「%(b)s」的客户（注册期间 %(p)s），由开户漏斗分析生成，"
                    "可用于召回 SOP。客户完成下一步后会在重算时离开本客群。") % {
        "a": FunnelStage(stage).label, "b": FunnelStage(nxt).label, "p": period}
    return segment_create(actor=actor, name=name, rule=dropouts_rule(stage=stage, filters=filters),
                          description=description, branch=filters.branch)
