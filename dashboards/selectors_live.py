"""The database truth behind every live dashboard tile, per day (Asia/Shanghai) and data scope.

Counters in Redis (dashboards/live.py) are a cache of these numbers: they are built from here on a
miss, corrected from here by the reconcile task, and compared with these in the tests. Every query
groups by (day, branch, advisor) of the customer, so one pass yields the firm, every branch and every
advisor at once (``rows_to_scopes``); a single scope passes a customer filter instead.

Day boundaries are local midnights; a customer's scope is their current branch and advisor.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection

from customers.models import BehaviourEvent, Customer, Task, Touch, Trade
from sop.selectors import REPLY_WINDOW

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)

# What each counter field of a day means (the README lists the same definitions).
SOP_SENT_OUTCOMES = ("sent", "queued", "prepared")  # SMS/app push handed to the provider, WeCom prepared for the advisor
REPLY_WINDOW_HOURS = int(REPLY_WINDOW.total_seconds() // 3600)  # sop.selectors.REPLY_WINDOW: one definition of a reply
DAY_FIELDS = ("contacts", "opened", "funded", "trades", "amount_fen", "tasks_due", "tasks_done",
              "sop_sent", "sop_blocked", "sop_replied")
HOUR_FIELDS = tuple(f"h{h:02d}" for h in range(24))


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZONE)


def scope_filter(scope_key: str | None) -> tuple[str, list]:
    """SQL over the customer alias ``c`` for a scope key (``firm``, ``b<branch id>``, ``a<advisor id>``)."""
    if scope_key is None or scope_key == "firm":
        return "TRUE", []
    if scope_key.startswith("b"):
        return "c.branch_id = %s", [int(scope_key[1:])]
    if scope_key.startswith("a"):
        return "c.advisor_id = %s", [int(scope_key[1:])]
    raise ValueError(f"unknown scope key {scope_key!r}")


def customer_scope_keys(branch_id: int | None, advisor_id: int | None) -> list[str]:
    keys = ["firm"]
    if branch_id is not None:
        keys.append(f"b{branch_id}")
    if advisor_id is not None:
        keys.append(f"a{advisor_id}")
    return keys


def fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def local_day_sql(column: str) -> str:
    return f"({column} AT TIME ZONE '{TZ}')::date"


def day_rows(*, first: date, last: date, scope_key: str | None = None) -> dict[tuple, dict]:
    """``{(day, branch_id, advisor_id): {field: int}}`` for every counter field of days first..last (inclusive),
    ``active`` being distinct customers with a trade or behaviour event that day. Uses the time indexes:
    trade_time, event_time_brin, cust_opened (the same COALESCE expression)."""
    start, end = day_start(first), day_start(last + timedelta(days=1))
    where, wparams = scope_filter(scope_key)
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    customer = Customer._meta.db_table

    def collect(sql, params, fields):
        for row in fetch(sql, params):
            key, values = row[:3], row[3:]
            for field, value in zip(fields, values, strict=True):
                if field is not None and value:
                    out[key][field] += int(value)

    day = local_day_sql("t.traded_at")
    hour = f"extract(hour FROM t.traded_at AT TIME ZONE '{TZ}')::int"
    for d, b, a, h, n, fen in fetch(
            f"SELECT {day}, c.branch_id, c.advisor_id, {hour}, count(*), sum(round(t.amount * 100))::bigint "
            f"FROM {Trade._meta.db_table} t JOIN {customer} c ON c.id = t.customer_id "
            f"WHERE t.traded_at >= %s AND t.traded_at < %s AND {where} GROUP BY 1, 2, 3, 4", [start, end, *wparams]):
        row = out[(d, b, a)]
        row["trades"] += n
        row["amount_fen"] += int(fen or 0)
        row[f"h{h:02d}"] += n
    collect(f"SELECT x.d, c.branch_id, c.advisor_id, count(DISTINCT x.customer_id) FROM ("
            f"  SELECT customer_id, {local_day_sql('occurred_at')} AS d FROM {BehaviourEvent._meta.db_table} "
            f"  WHERE occurred_at >= %s AND occurred_at < %s "
            f"  UNION SELECT customer_id, {local_day_sql('traded_at')} FROM {Trade._meta.db_table} "
            f"  WHERE traded_at >= %s AND traded_at < %s) x "
            f"JOIN {customer} c ON c.id = x.customer_id WHERE {where} GROUP BY 1, 2, 3",
            [start, end, start, end, *wparams], ["active"])
    collect(f"SELECT {local_day_sql('f.added_at')}, c.branch_id, c.advisor_id, count(*) "
            f"FROM wecom_contactfollow f JOIN wecom_externalcontact e ON e.id = f.contact_id "
            f"JOIN {customer} c ON c.id = e.customer_id "
            f"WHERE f.added_at >= %s AND f.added_at < %s AND {where} GROUP BY 1, 2, 3",
            [start, end, *wparams], ["contacts"])
    for key, fields in opened_rows(day=first, last=last, scope_key=scope_key).items():
        for field, value in fields.items():
            out[key][field] += value
    tasks = Task._meta.db_table
    collect(f"SELECT {local_day_sql('t.due_at')}, c.branch_id, c.advisor_id, count(*) FROM {tasks} t "
            f"JOIN {customer} c ON c.id = t.customer_id "
            f"WHERE t.due_at >= %s AND t.due_at < %s AND t.status <> 'cancelled' AND {where} GROUP BY 1, 2, 3",
            [start, end, *wparams], ["tasks_due"])
    collect(f"SELECT {local_day_sql('t.completed_at')}, c.branch_id, c.advisor_id, count(*) FROM {tasks} t "
            f"JOIN {customer} c ON c.id = t.customer_id "
            f"WHERE t.completed_at >= %s AND t.completed_at < %s AND t.status = 'done' AND {where} GROUP BY 1, 2, 3",
            [start, end, *wparams], ["tasks_done"])
    sent = f"s.status = 'done' AND s.outcome IN ({', '.join(['%s'] * len(SOP_SENT_OUTCOMES))})"
    collect(f"SELECT {local_day_sql('s.finished_at')}, c.branch_id, c.advisor_id, "
            f"count(*) FILTER (WHERE {sent}), count(*) FILTER (WHERE s.status = 'blocked'), "
            f"count(*) FILTER (WHERE {sent} AND EXISTS (SELECT 1 FROM {Touch._meta.db_table} r "
            f"  WHERE r.customer_id = c.id AND r.direction = 'in' AND r.source <> ALL(%s) "
            f"  AND r.occurred_at > s.finished_at AND r.occurred_at <= s.finished_at + interval '{REPLY_WINDOW_HOURS} hours')) "
            f"FROM sop_steprun s JOIN sop_enrollment e ON e.id = s.enrollment_id JOIN {customer} c ON c.id = e.customer_id "
            f"WHERE s.finished_at >= %s AND s.finished_at < %s AND {where} GROUP BY 1, 2, 3",
            [*SOP_SENT_OUTCOMES, *SOP_SENT_OUTCOMES, list(Touch.BOOKKEEPING_SOURCES), start, end, *wparams],
            ["sop_sent", "sop_blocked", "sop_replied"])
    return {k: dict(v) for k, v in out.items()}


def opened_rows(*, day: date, last: date | None = None, scope_key: str | None = None) -> dict[tuple, dict]:
    """Accounts opened on day..last (``opened_at``) and, of those, already funded — by (day, branch, advisor).
    The COALESCE matches the cust_opened index, so this is a range scan of that day's openings."""
    where, wparams = scope_filter(scope_key)
    rows = fetch(f"SELECT COALESCE(c.opened_at, DATE '1970-01-01'), c.branch_id, c.advisor_id, count(*), "
                  f"count(*) FILTER (WHERE c.funnel_stage = 'funded') FROM {Customer._meta.db_table} c "
                  f"WHERE COALESCE(c.opened_at, DATE '1970-01-01') BETWEEN %s AND %s AND {where} GROUP BY 1, 2, 3",
                  [day, last or day, *wparams])
    return {(d, b, a): {"opened": n, "funded": funded} for d, b, a, n, funded in rows}


def active_customer_rows(*, day: date, scope_key: str | None = None) -> list[tuple[int, int, int | None]]:
    """(customer_id, branch_id, advisor_id) of every customer active that day (a trade or an event) — the members
    of today's active sets in Redis."""
    start, end = day_start(day), day_start(day + timedelta(days=1))
    where, wparams = scope_filter(scope_key)
    return fetch(
        f"SELECT c.id, c.branch_id, c.advisor_id FROM {Customer._meta.db_table} c WHERE {where} AND c.id IN ("
        f"SELECT customer_id FROM {BehaviourEvent._meta.db_table} WHERE occurred_at >= %s AND occurred_at < %s "
        f"UNION SELECT customer_id FROM {Trade._meta.db_table} WHERE traded_at >= %s AND traded_at < %s)",
        [*wparams, start, end, start, end])


def rows_to_scopes(rows: dict[tuple, dict], *, only: str | None = None) -> dict[tuple[date, str], dict]:
    """Roll (day, branch, advisor) rows up into ``{(day, scope key): {field: int}}`` for the firm, each branch and
    each advisor; ``only`` keeps one scope key."""
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for (day, branch_id, advisor_id), fields in rows.items():
        for key in customer_scope_keys(branch_id, advisor_id):
            if only is not None and key != only:
                continue
            for field, value in fields.items():
                out[(day, key)][field] += value
    return {k: dict(v) for k, v in out.items()}


def scope_days_truth(*, scope_key: str, first: date, last: date) -> dict[date, dict]:
    """Every counter of one scope for each day first..last (zeros included)."""
    rolled = rows_to_scopes(day_rows(first=first, last=last, scope_key=scope_key), only=scope_key)
    days = {}
    day = first
    while day <= last:
        fields = {f: 0 for f in (*DAY_FIELDS, *HOUR_FIELDS, "active")}
        fields.update(rolled.get((day, scope_key), {}))
        days[day] = fields
        day += timedelta(days=1)
    return days


# --- current state (not per day): tiers and opportunities awaiting follow-up -------------------------------------

def tier_distribution(*, scope_key: str) -> list[dict]:
    """Customers per current value tier in the scope, in the active scheme's order, with the untiered last."""
    from tagging.tiers import tier_definitions

    where, wparams = scope_filter(scope_key)
    if where == "TRUE":
        rows = fetch("SELECT code, count(*) FROM tagging_customertier GROUP BY code", [])
    else:
        rows = fetch(f"SELECT t.code, count(*) FROM tagging_customertier t JOIN {Customer._meta.db_table} c "
                      f"ON c.id = t.customer_id WHERE {where} GROUP BY t.code", wparams)
    counts = dict(rows)
    definitions = tier_definitions()
    out = [{"code": code, "label": str(d.label), "colour": d.colour, "count": counts.pop(code, 0)}
           for code, d in sorted(definitions.items(), key=lambda kv: kv[1].rank)]
    out += [{"code": code, "label": code, "colour": "secondary", "count": n} for code, n in sorted(counts.items())]
    return out


def opportunities_awaiting(*, scope_key: str) -> int:
    """Current (unexpired) opportunity-category tags whose client has had no contact since the tag was set."""
    where, wparams = scope_filter(scope_key)
    return fetch(
        f"SELECT count(*) FROM tagging_customertag ct JOIN tagging_tag g ON g.id = ct.tag_id "
        f"JOIN tagging_tagcategory k ON k.id = g.category_id JOIN {Customer._meta.db_table} c ON c.id = ct.customer_id "
        f"WHERE k.kind = 'opportunity' AND (ct.expires_at IS NULL OR ct.expires_at > now()) "
        f"AND (c.last_contact_at IS NULL OR c.last_contact_at < ct.created_at) AND {where}", wparams)[0][0]
