"""SOP results across journeys (SOP 效果汇总): per journey, who entered and where they are, what the touches
did, and whether the journey beat its hold-out.

Definitions:
- enrolled: every enrollment (hold-out included); active / finished (completed or exited) / hold-out;
- touches: message steps that produced a touch; sent = it went out (sent, delivered or replied), delivered,
  replied = marked replied or an inbound touch from the client within 48 hours after it
  (sop.selectors.REPLY_WINDOW; WeCom add/delete bookkeeping does not count); blocked = step runs
  the guards or a missing template/advisor stopped (with their reason); failed = dead step runs;
- goal rate: enrollments whose goal was met (``goal_met_at``) over the treated ones (not hold-out), and the
  same for the hold-out; uplift = the difference in percentage points;
- touches per conversion: sent touches / treated goals met; per incremental conversion: sent touches /
  (uplift × treated).

Precomputed per (journey, client's branch) by ``sop_rollup_refresh`` (Celery beat) into the cache; the page
sums the rows of the viewer's scope.
"""

from datetime import datetime

from django.core.cache import cache
from django.db import connection
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from customers.models import Touch
from sop.selectors import REPLY_WINDOW

CACHE_KEY = "people:sop_rollup"
CACHE_TTL = 24 * 3600
COUNTS = ("enrolled", "active", "finished", "holdout", "treated", "treated_goal", "holdout_goal",
          "touches", "sent", "delivered", "replied", "blocked", "failed")

_ENROLLMENTS_SQL = """
SELECT e.journey_id, c.branch_id, count(*),
       count(*) FILTER (WHERE e.status = 'active'),
       count(*) FILTER (WHERE e.status IN ('completed', 'exited')),
       count(*) FILTER (WHERE e.status = 'holdout'),
       count(*) FILTER (WHERE e.status <> 'holdout'),
       count(*) FILTER (WHERE e.status <> 'holdout' AND e.goal_met_at IS NOT NULL),
       count(*) FILTER (WHERE e.status = 'holdout' AND e.goal_met_at IS NOT NULL)
FROM sop_enrollment e JOIN customers_customer c ON c.id = e.customer_id
GROUP BY 1, 2
"""

_STEPS_SQL = """
SELECT e.journey_id, c.branch_id,
       count(t.id),
       count(*) FILTER (WHERE t.status IN ('sent', 'delivered', 'replied')),
       count(*) FILTER (WHERE t.status IN ('delivered', 'replied')),
       count(*) FILTER (WHERE t.status = 'replied' OR (t.status IN ('sent', 'delivered') AND EXISTS (
                  SELECT 1 FROM customers_touch i
                  WHERE i.customer_id = t.customer_id AND i.direction = 'in'
                    AND i.occurred_at > t.occurred_at AND i.occurred_at <= t.occurred_at + %(reply)s
                    AND i.source <> ALL(%(not_replies)s)))),
       count(*) FILTER (WHERE r.status = 'blocked'),
       count(*) FILTER (WHERE r.status = 'dead')
FROM sop_steprun r
JOIN sop_enrollment e ON e.id = r.enrollment_id
JOIN customers_customer c ON c.id = e.customer_id
LEFT JOIN customers_touch t ON t.id = r.touch_id
GROUP BY 1, 2
"""

_BLOCK_REASONS_SQL = """
SELECT e.journey_id, c.branch_id, r.block_reason, count(*)
FROM sop_steprun r
JOIN sop_enrollment e ON e.id = r.enrollment_id
JOIN customers_customer c ON c.id = e.customer_id
WHERE r.status = 'blocked'
GROUP BY 1, 2, 3
"""


def sop_rollup_compute(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    rows: dict[tuple, dict] = {}

    def row(key):
        return rows.setdefault(key, {**dict.fromkeys(COUNTS, 0), "block_reasons": {}})

    with connection.cursor() as cur:
        cur.execute(_ENROLLMENTS_SQL)
        for journey_id, branch_id, *values in cur.fetchall():
            row((journey_id, branch_id)).update(zip(COUNTS[:7], values, strict=True))
        cur.execute(_STEPS_SQL, {"reply": REPLY_WINDOW, "not_replies": list(Touch.BOOKKEEPING_SOURCES)})
        for journey_id, branch_id, *values in cur.fetchall():
            row((journey_id, branch_id)).update(zip(COUNTS[7:], values, strict=True))
        cur.execute(_BLOCK_REASONS_SQL)
        for journey_id, branch_id, reason, n in cur.fetchall():
            row((journey_id, branch_id))["block_reasons"][reason or "other"] = n
    data = {"computed_at": now,
            "rows": [{"journey_id": j, "branch_id": b, **counts} for (j, b), counts in rows.items()]}
    cache.set(CACHE_KEY, data, CACHE_TTL)
    return data


def sop_rollup_refresh(*, now: datetime | None = None) -> int:
    return len(sop_rollup_compute(now=now)["rows"])


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def results_url(journey_id: int) -> str:
    """The journey's own results page, when the SOP area has it."""
    for args, kwargs in (((journey_id,), None), ((), {"journey_id": journey_id}), ((), {"pk": journey_id})):
        try:
            return reverse("sop:journey_results", args=args, kwargs=kwargs)
        except NoReverseMatch:
            continue
    return ""


def with_rates(row: dict) -> dict:
    treated_rate = _pct(row["treated_goal"], row["treated"])
    holdout_rate = _pct(row["holdout_goal"], row["holdout"])
    uplift = round(treated_rate - holdout_rate, 1) if treated_rate is not None and holdout_rate is not None else None
    incremental = row["treated"] * uplift / 100 if uplift is not None else None
    return {**row, "treated_rate": treated_rate, "holdout_rate": holdout_rate, "uplift": uplift,
            "sent_rate": _pct(row["sent"], row["touches"]), "reply_rate": _pct(row["replied"], row["sent"]),
            "touches_per_conversion": round(row["sent"] / row["treated_goal"], 1) if row["treated_goal"] else None,
            "touches_per_incremental": round(row["sent"] / incremental, 1) if incremental and incremental > 0 else None}


def sop_rollup(*, user) -> dict:
    """One row per journey (with enrollments in ``user``'s scope, or running), sums over the scope's branches."""
    from dashboards.churn import rows_in_scope
    from sop.definition import GOALS
    from sop.models import Journey

    data = cache.get(CACHE_KEY) or sop_rollup_compute()
    summed: dict[int, dict] = {}
    for row in rows_in_scope([{**r, "advisor_id": None} for r in data["rows"]], user):
        target = summed.setdefault(row["journey_id"], {**dict.fromkeys(COUNTS, 0), "block_reasons": {}})
        for name in COUNTS:
            target[name] += row[name]
        for reason, n in row["block_reasons"].items():
            target["block_reasons"][reason] = target["block_reasons"].get(reason, 0) + n
    journeys = Journey.objects.filter(pk__in=set(summed)) | Journey.objects.filter(status=Journey.Status.LIVE)
    table = []
    for journey in journeys.select_related("live_version").order_by("-updated_at", "-pk"):
        counts = summed.get(journey.pk, {**dict.fromkeys(COUNTS, 0), "block_reasons": {}})
        definition = journey.live_version.definition if journey.live_version else journey.draft
        goal = (definition or {}).get("goal") or {}
        table.append(with_rates({
            "journey_id": journey.pk, "name": journey.name, "status": journey.get_status_display(),
            "status_code": journey.status, "goal": GOALS.get(goal.get("type"), "—") if goal else "—",
            "holdout_percent": (definition or {}).get("holdout_percent") or 0,
            "url": results_url(journey.pk), **counts}))
    totals = with_rates({name: sum(r[name] for r in table) for name in COUNTS})
    return {"computed_at": data["computed_at"], "rows": table, "totals": totals}
