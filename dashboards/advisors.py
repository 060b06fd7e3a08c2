"""Advisor follow-up (投顾跟进): opportunity tags received and followed up, tasks on time, touches and replies,
conversions, per advisor, for the last 7 / 30 / 90 days.

Definitions (the page and the README say the same):
- received: an opportunity tag (category kind 商机) added to one of the advisor's clients in the period
  (tag history "added", any source);
- followed up within 48 h: an outbound touch that went out (sent/delivered/replied), a completed task or a
  follow-up note on that client within 48 hours after the tag;
- converted: within 14 days of the tag, a task on that client closed with outcome "已成交", or a trade by
  the client after the first follow-up;
- tasks due: tasks (not cancelled) whose due time fell in the period; on time: completed by the due time;
  overdue: completed late or still open after it;
- touches out: outbound touches to the advisor's clients that went out (any channel, SOP messages included);
  replies: inbound touches from them.
Clients count for their current advisor and branch; tasks for their assignee and the client's branch.

The numbers are precomputed for every (branch, advisor) by ``advisor_stats_refresh`` (Celery beat, every
10 minutes) into the cache; the page sums the rows in the viewer's scope, so it costs the same at any size.
"""

from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
FOLLOW_UP_HOURS = 48
CONVERSION_DAYS = 14
CACHE_TTL = 24 * 3600
COUNTS = ("received", "followed_48h", "followed_any", "converted", "tasks_due", "tasks_on_time", "tasks_overdue",
          "touches_out", "replies_in")

_OPPORTUNITIES_SQL = """
WITH opp AS (
    SELECT h.id, h.customer_id, h.at, c.branch_id, c.advisor_id
    FROM tagging_customertaghistory h
    JOIN tagging_tag tg ON tg.id = h.tag_id
    JOIN tagging_tagcategory cat ON cat.id = tg.category_id AND cat.kind = 'opportunity'
    JOIN customers_customer c ON c.id = h.customer_id
    WHERE h.action = 'added' AND h.at >= %(start)s AND h.at < %(end)s
),
fu AS (
    SELECT o.*, (SELECT min(x.at) FROM (
                    SELECT min(t.occurred_at) AS at FROM customers_touch t
                    WHERE t.customer_id = o.customer_id AND t.direction = 'out'
                      AND t.status IN ('sent', 'delivered', 'replied')
                      AND t.occurred_at >= o.at AND t.occurred_at < o.at + %(horizon)s
                    UNION ALL
                    SELECT min(k.completed_at) FROM customers_task k
                    WHERE k.customer_id = o.customer_id AND k.status = 'done'
                      AND k.completed_at >= o.at AND k.completed_at < o.at + %(horizon)s
                    UNION ALL
                    SELECT min(n.created_at) FROM customers_note n
                    WHERE n.customer_id = o.customer_id AND n.created_at >= o.at AND n.created_at < o.at + %(horizon)s
                ) x) AS first_at
    FROM opp o
)
SELECT branch_id, advisor_id, count(*),
       count(*) FILTER (WHERE fu.first_at < fu.at + %(follow)s),
       count(*) FILTER (WHERE fu.first_at IS NOT NULL),
       count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM customers_task k
                   WHERE k.customer_id = fu.customer_id AND k.status = 'done' AND k.outcome = 'converted'
                     AND k.completed_at >= fu.at AND k.completed_at < fu.at + %(horizon)s)
                OR (fu.first_at IS NOT NULL AND EXISTS (
                   SELECT 1 FROM customers_trade tr
                   WHERE tr.customer_id = fu.customer_id AND tr.traded_at > fu.first_at
                     AND tr.traded_at < fu.at + %(horizon)s)))
FROM fu GROUP BY 1, 2
"""

_TASKS_SQL = """
SELECT c.branch_id, k.assignee_id, count(*),
       count(*) FILTER (WHERE k.status = 'done' AND k.completed_at <= k.due_at),
       count(*) FILTER (WHERE (k.status = 'done' AND k.completed_at > k.due_at) OR k.status = 'open')
FROM customers_task k JOIN customers_customer c ON c.id = k.customer_id
WHERE k.due_at >= %(start)s AND k.due_at < %(end)s AND k.status <> 'cancelled'
GROUP BY 1, 2
"""

_TOUCHES_SQL = """
SELECT c.branch_id, c.advisor_id,
       count(*) FILTER (WHERE t.direction = 'out' AND t.status IN ('sent', 'delivered', 'replied')),
       count(*) FILTER (WHERE t.direction = 'in')
FROM customers_touch t JOIN customers_customer c ON c.id = t.customer_id
WHERE t.occurred_at >= %(start)s AND t.occurred_at < %(end)s
GROUP BY 1, 2
"""


def cache_key(days: int) -> str:
    return f"people:advisors:{days}"


def advisor_stats_compute(*, days: int, now: datetime | None = None) -> dict:
    """Counts per (branch, advisor) for the ``days`` before ``now``; stored in the cache and returned."""
    now = now or timezone.now()
    params = {"start": now - timedelta(days=days), "end": now, "horizon": timedelta(days=CONVERSION_DAYS),
              "follow": timedelta(hours=FOLLOW_UP_HOURS)}
    rows: dict[tuple, dict] = {}

    def add(key, names, values):
        row = rows.setdefault(key, dict.fromkeys(COUNTS, 0))
        for name, value in zip(names, values, strict=True):
            row[name] += value

    with connection.cursor() as cur:
        cur.execute(_OPPORTUNITIES_SQL, params)
        for branch_id, advisor_id, *values in cur.fetchall():
            add((branch_id, advisor_id), ("received", "followed_48h", "followed_any", "converted"), values)
        cur.execute(_TASKS_SQL, params)
        for branch_id, advisor_id, *values in cur.fetchall():
            add((branch_id, advisor_id), ("tasks_due", "tasks_on_time", "tasks_overdue"), values)
        cur.execute(_TOUCHES_SQL, params)
        for branch_id, advisor_id, *values in cur.fetchall():
            add((branch_id, advisor_id), ("touches_out", "replies_in"), values)
    data = {"computed_at": now, "days": days,
            "rows": [{"branch_id": b, "advisor_id": a, **counts} for (b, a), counts in rows.items()]}
    cache.set(cache_key(days), data, CACHE_TTL)
    return data


def advisor_stats_refresh(*, now: datetime | None = None) -> dict:
    """Every period (beat)."""
    now = now or timezone.now()
    return {days: len(advisor_stats_compute(days=days, now=now)["rows"]) for days in PERIODS}


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def with_rates(row: dict) -> dict:
    return {**row,
            "follow_rate": _rate(row["followed_48h"], row["received"]),
            "conversion_rate": _rate(row["converted"], row["received"]),
            "on_time_rate": _rate(row["tasks_on_time"], row["tasks_due"]),
            "reply_rate": _rate(row["replies_in"], row["touches_out"])}


SORTS = {"received", "followed_48h", "follow_rate", "converted", "conversion_rate", "tasks_due", "tasks_on_time",
         "on_time_rate", "tasks_overdue", "touches_out", "replies_in", "reply_rate", "name"}


def advisor_leaderboard(*, user, days: int, by: str = "advisor", sort: str = "follow_rate", descending: bool = True
                        ) -> dict:
    """Rows in ``user``'s scope, one per advisor (or per branch with ``by="branch"``), with rates, sorted."""
    from core.models import Branch, User
    from dashboards.churn import rows_in_scope

    data = cache.get(cache_key(days)) or advisor_stats_compute(days=days)
    grouped: dict = {}
    for row in rows_in_scope(data["rows"], user):
        key = (row["branch_id"],) if by == "branch" else (row["branch_id"], row["advisor_id"])
        target = grouped.setdefault(key, dict.fromkeys(COUNTS, 0))
        for name in COUNTS:
            target[name] += row[name]
    branches = {b.pk: b.name for b in Branch.objects.filter(pk__in={k[0] for k in grouped})}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in={k[1] for k in grouped if len(k) > 1 and k[1]})}
    table = []
    for key, counts in grouped.items():
        branch = branches.get(key[0], "")
        if by == "branch":
            name = branch
        else:
            name = names.get(key[1], "") if key[1] else "（未分配投顾）"
        table.append(with_rates({"branch_id": key[0], "advisor_id": key[1] if len(key) > 1 else None,
                                 "branch": branch, "name": name, **counts}))
    sort = sort if sort in SORTS else "follow_rate"
    if sort == "name":
        table.sort(key=lambda r: (r["branch"], r["name"]), reverse=descending)
    else:  # rows without a value (no opportunities, no tasks) go last either way
        present = sorted([r for r in table if r[sort] is not None], key=lambda r: (r[sort], r["received"]),
                         reverse=descending)
        table = present + sorted([r for r in table if r[sort] is None], key=lambda r: (r["branch"], r["name"]))
    totals = with_rates({name: sum(r[name] for r in table) for name in COUNTS})
    return {"computed_at": data["computed_at"], "days": days, "rows": table, "totals": totals, "sort": sort,
            "descending": descending, "by": by}
