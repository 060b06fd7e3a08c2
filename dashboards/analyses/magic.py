"""The "magic number": for an early behaviour (news read, product views, App logins in the first 30 days after
opening) and a later outcome (a second trade within 90 days of opening, funding, 3-month retention), the outcome
rate of opened clients per behaviour count (0, 1, …, 9, 10+), and the threshold where the rate jumps.

Threshold: the count b (1–10) with the largest rise ``rate(b) − rate(b−1)``, counting only buckets with at
least MIN_BUCKET clients, and only when that rise is at least MIN_JUMP; "clients who did it b times or more" is
then compared with the rest. Only clients who opened at least four calendar months before the current month are
counted, so the 30-day window, the 90-day second trade and the third month after opening are all complete.
"""

from django.db.models import Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from dashboards.analyses.common import Filters, current_month, month_add, month_label, percent, rate
from dashboards.models import MagicCell

BEHAVIOURS = {"news": gettext_lazy("阅读资讯"), "views": gettext_lazy("浏览产品"), "logins": gettext_lazy("登录 App")}
OUTCOMES = {"second_trade": gettext_lazy("90 天内第二笔交易"), "funded": gettext_lazy("入金"),
            "retained": gettext_lazy("第 3 个月仍活跃（交易或登录）")}
BUCKETS = 11  # 0..9 and 10+
MIN_BUCKET = 30
MIN_JUMP = 0.05
SETTLE_MONTHS = 4


def bucket_label(bucket: int) -> str:
    return "10+" if bucket == BUCKETS - 1 else str(bucket)


def magic_report(filters: Filters, *, behaviour: str, outcome: str) -> dict:
    last_eligible = month_add(current_month(), -SETTLE_MONTHS)
    end = min(filters.end, last_eligible)
    qs = filters.apply(MagicCell.objects.filter(behaviour=behaviour), month_field="opened_month")
    qs = qs.filter(opened_month__lte=end)
    sums = {b: (c, o) for b, c, o in qs.order_by().values_list("bucket").annotate(c=Sum("clients"), o=Sum(outcome))
            .values_list("bucket", "c", "o")}
    buckets = []
    for b in range(BUCKETS):
        clients, hits = sums.get(b, (0, 0))
        buckets.append({"bucket": b, "label": bucket_label(b), "clients": clients or 0, "hits": hits or 0,
                        "rate": rate(hits or 0, clients or 0), "jump": None})
    best = None
    for b in range(1, BUCKETS):
        here, before = buckets[b], buckets[b - 1]
        if here["clients"] < MIN_BUCKET or before["clients"] < MIN_BUCKET:
            continue
        here["jump"] = here["rate"] - before["rate"]
        if here["jump"] >= MIN_JUMP and (best is None or here["jump"] > buckets[best]["jump"]):
            best = b
    for x in buckets:
        x["rate_text"] = percent(x["rate"])
        x["jump_text"] = "" if x["jump"] is None else f"{x['jump'] * 100:+.1f}pp"
    total_clients = sum(x["clients"] for x in buckets)
    total_hits = sum(x["hits"] for x in buckets)
    summary = None
    if best is not None:
        above = [x for x in buckets if x["bucket"] >= best]
        below = [x for x in buckets if x["bucket"] < best]
        rate_above = rate(sum(x["hits"] for x in above), sum(x["clients"] for x in above))
        rate_below = rate(sum(x["hits"] for x in below), sum(x["clients"] for x in below))
        summary = {"threshold": best, "label": bucket_label(best), "rate_above": rate_above, "rate_below": rate_below,
                   "clients_above": sum(x["clients"] for x in above),
                   "lift": (rate_above / rate_below) if rate_below else None,
                   "rate_above_text": percent(rate_above), "rate_below_text": percent(rate_below)}
    return {"buckets": buckets, "threshold": summary, "clients": total_clients, "overall_rate": rate(total_hits, total_clients),
            "overall_rate_text": percent(rate(total_hits, total_clients)),
            "last_eligible": month_label(last_eligible), "empty_period": end < filters.start,
            "behaviour_label": str(BEHAVIOURS[behaviour]), "outcome_label": str(OUTCOMES[outcome])}


def magic_csv_rows(report: dict) -> tuple[list[str], list[list]]:
    header = [_("%(b)s次数（开户后 30 天）") % {"b": report["behaviour_label"]}, _("客户数"),
              _("达成「%(o)s」人数") % {"o": report["outcome_label"]}, _("达成率"), _("较上一档变化")]
    rows = [[x["label"], x["clients"], x["hits"], x["rate_text"], x["jump_text"]] for x in report["buckets"]]
    return header, rows
