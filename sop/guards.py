"""Every touch passes these guards, here and nowhere else — for a batch of step runs at once, in a
handful of queries, so the dispatcher stays fast.

Order: unsubscribed → WeCom contact state → investor suitability → the executing advisor's scope →
frequency caps (per channel and day/week/month across ALL journeys; WeCom's platform limit of 4
group-send messages per client per natural month always applies; touches that are not outreach —
the contact-way welcome, WeCom bookkeeping, see customers.models.Touch — do not count) → quiet hours. The first five
BLOCK (recorded with the reason, visible to compliance); quiet hours DEFER to the end of the window.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

BLOCK_REASONS = {
    "unsubscribed": _("客户已退订该渠道"),
    "wecom_not_contact": _("客户不是企业微信好友"),
    "wecom_deleted": _("客户已删除企业微信好友"),
    "suitability_expired": _("风险测评已过期（适当性）"),
    "suitability_level": _("产品风险等级高于客户风险承受能力（适当性）"),
    "no_advisor": _("客户没有负责投顾"),
    "advisor_out_of_scope": _("执行投顾不能看到该客户"),
    "frequency_cap": _("超过触达频次上限"),
    "wecom_monthly_limit": _("本自然月企业微信群发已达 4 条上限"),
    "template_not_approved": _("模板版本未经合规批准"),
    "calendar_unknown": _("交易日历未覆盖，无法确定下一个交易日"),
}
WECOM_MONTHLY_LIMIT = 4
COUNTED_STATUSES = ("queued", "sent", "delivered", "replied")
RISK_RANK = {"C1": 1, "C2": 2, "C3": 3, "C4": 4, "C5": 5, "R1": 1, "R2": 2, "R3": 3, "R4": 4, "R5": 5}


@dataclass
class TouchCandidate:
    key: int  # the step run
    customer: object  # customers.Customer with advisor loaded
    channel: str
    product: object | None  # customers.Product of the template version
    executor: str  # "system" | "advisor"


def _in_quiet_hours(moment: datetime, start: time, end: time) -> datetime | None:
    """The end of the quiet window containing ``moment`` (local time), or None outside it."""
    local = timezone.localtime(moment)
    now_t = local.time()
    inside = (start <= now_t or now_t < end) if start > end else (start <= now_t < end)
    if not inside or start == end:
        return None
    end_day = local.date() + timedelta(days=1) if (start > end and now_t >= start) else local.date()
    return timezone.make_aware(datetime.combine(end_day, end), local.tzinfo)


def _windows(now: datetime) -> dict[str, datetime]:
    local = timezone.localtime(now)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"day": day, "week": day - timedelta(days=local.weekday()), "month": day.replace(day=1)}


def guards_check(candidates: list[TouchCandidate], *, now: datetime | None = None) -> dict[int, tuple]:
    """``{key: ("block", reason) | ("defer", until)}`` for candidates that may not go now."""
    from customers.models import Touch
    from customers.selectors import risk_expiry_cutoff
    from integrations.wecom.models import ExternalContact
    from sop.models import GuardPolicy, Unsubscribe

    now = now or timezone.now()
    if not candidates:
        return {}
    policy = GuardPolicy.objects.filter(pk=1).first() or GuardPolicy(caps={})
    customer_ids = {c.customer.pk for c in candidates}
    channels = {c.channel for c in candidates}
    unsubscribed = set(Unsubscribe.objects.filter(customer_id__in=customer_ids, channel__in=channels)
                       .values_list("customer_id", "channel"))
    wecom_ids = {c.customer.wecom_external_userid for c in candidates if c.customer.wecom_external_userid}
    deleted_contacts = set(ExternalContact.objects.filter(external_userid__in=wecom_ids, deleted_at__isnull=False)
                           .values_list("external_userid", flat=True)) if wecom_ids else set()
    cutoff = risk_expiry_cutoff(timezone.localdate(now))
    windows = _windows(now)
    # touches already made or queued, per customer and channel, in each window (one query)
    counts = {}
    rows = (Touch.objects.filter(customer_id__in=customer_ids, channel__in=channels, direction="out",
                                 status__in=COUNTED_STATUSES, occurred_at__gte=min(windows.values()))
            .exclude(source__in=Touch.NOT_OUTREACH_SOURCES)
            .values("customer_id", "channel")
            .annotate(**{period: Count("pk", filter=Q(occurred_at__gte=start)) for period, start in windows.items()}))
    for row in rows:
        counts[(row["customer_id"], row["channel"])] = {p: row[p] for p in windows}
    quiet_until = _in_quiet_hours(now, policy.quiet_start, policy.quiet_end)

    verdicts: dict[int, tuple] = {}
    for c in candidates:
        customer = c.customer
        reason = None
        if (customer.pk, c.channel) in unsubscribed:
            reason = "unsubscribed"
        elif c.channel == "wecom" and not customer.wecom_external_userid:
            reason = "wecom_not_contact"
        elif c.channel == "wecom" and customer.wecom_external_userid in deleted_contacts:
            reason = "wecom_deleted"
        elif c.product is not None and (not customer.risk_assessed_at or customer.risk_assessed_at <= cutoff):
            reason = "suitability_expired"
        elif c.product is not None and RISK_RANK.get(c.product.risk_level, 9) > RISK_RANK.get(customer.risk_level, 0):
            reason = "suitability_level"
        elif c.executor == "advisor" and customer.advisor_id is None:
            reason = "no_advisor"
        elif c.executor == "advisor" and not (customer.advisor and customer.advisor.is_active):
            reason = "advisor_out_of_scope"
        else:
            used = counts.setdefault((customer.pk, c.channel), dict.fromkeys(windows, 0))
            caps = dict(policy.caps.get(c.channel) or {})
            if c.channel == "wecom" and used["month"] >= WECOM_MONTHLY_LIMIT:
                reason = "wecom_monthly_limit"
            elif any(used[p] >= int(limit) for p, limit in caps.items() if p in used):
                reason = "frequency_cap"
            elif quiet_until is not None and c.channel in ("sms", "app_push", "wecom", "wecom_group"):
                verdicts[c.key] = ("defer", quiet_until)
                continue
            else:
                for period in used:  # the next candidate of the batch sees this touch
                    used[period] += 1
        if reason:
            verdicts[c.key] = ("block", reason)
    return verdicts


def wecom_budget_left(customer_ids, *, now=None) -> dict[int, int]:
    """WeCom group-send messages each client may still receive this natural month (for scheduling
    and the dry run)."""
    from customers.models import Touch

    start = _windows(now or timezone.now())["month"]
    used = dict(Touch.objects.filter(customer_id__in=customer_ids, channel="wecom", direction="out",
                                     status__in=COUNTED_STATUSES, occurred_at__gte=start)
                .exclude(source__in=Touch.NOT_OUTREACH_SOURCES)
                .values("customer_id").annotate(n=Count("pk")).values_list("customer_id", "n"))
    return {cid: max(0, WECOM_MONTHLY_LIMIT - used.get(cid, 0)) for cid in customer_ids}
