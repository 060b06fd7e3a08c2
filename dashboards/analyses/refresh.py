"""Keeps the analyses' summary tables (dashboards/models.py, below "Analyses' summary tables") in step with the
customers, trades and events, so every analysis page reads a few thousand pre-added rows instead of the raw tables.

Two layers, both written in SQL in one transaction:

1. ``AnalysisCustomerFact`` — one row per customer (its branch, channel, months, funnel stage, first-30-day
   behaviour counts, second trade, active months as bit masks).
2. ``AcquisitionMonthly`` / ``CohortMonthly`` / ``MagicCell`` — sums of the facts per (branch, channel, month).

``analyses_refresh()`` is incremental: it recomputes the facts of the customers that changed — a customer
whose row no longer matches its fact (new, edited, moved branch, deleted), or who has a trade or event with an
id above the last run's watermark — and then re-adds only the summary cells (branch, channel, month) those
customers were or are counted in. Running it twice changes nothing the second time. ``full=True`` rebuilds
everything (nightly, which also catches a trade or event whose transaction committed after a later id had
already been read). One refresh at a time: a second concurrent one returns ``None`` at once.
"""

import logging
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from customers.models import FUNNEL_ORDER
from dashboards.models import AnalysisRefresh

logger = logging.getLogger(__name__)

KEEP_RUNS_DAYS = 30  # the run log, kept for a month
LOCK_KEY = (0xA1A, 1)  # pg_try_advisory_xact_lock(int4, int4) space: (analyses, refresh)
MAX_OFFSET = 61  # months after opening kept in the bit masks (bits 0..61)
FIRST_YEAR, YEARS = 2000, 101  # calendar months 2000-01 … 2100-12: month number 1 … 1212

FACT = "dashboards_analysiscustomerfact"
ACQ = "dashboards_acquisitionmonthly"
COHORT = "dashboards_cohortmonthly"
MAGIC = "dashboards_magiccell"

LOCAL = "AT TIME ZONE 'Asia/Shanghai'"


def month_starts() -> list[datetime]:
    """Midnight (Beijing) of the first of every month 2000-01 … 2100-12: ``width_bucket(t, month_starts)`` is the
    month number of a timestamp (a binary search, no time-zone arithmetic per row)."""
    tz = ZoneInfo("Asia/Shanghai")
    return [datetime(FIRST_YEAR + i // 12, i % 12 + 1, 1, tzinfo=tz) for i in range(YEARS * 12)]


def _mask(column: str) -> str:
    """Bit (month number of ``column`` − the opening month number), or 0 outside 0..MAX_OFFSET; the offset is
    computed once: 1 << (offset + 1) clamped to 0..63, shifted back and cut to bits 0..61."""
    offset = f"(width_bucket({column}, %(months)s::timestamptz[]) - b.opened_mi)"
    return f"(((1::bigint << least(greatest({offset} + 1, 0), 63)) >> 1) & {(1 << (MAX_OFFSET + 1)) - 1})"


BASE_SQL = f"""
CREATE TEMP TABLE ana_base ON COMMIT DROP AS
SELECT c.id, c.branch_id, c.channel, c.created_at,
       date_trunc('month', c.created_at {LOCAL})::date AS signup_month,
       coalesce(array_position(%(stages)s::text[], c.funnel_stage::text), 1) - 1 AS stage,
       c.opened_at, date_trunc('month', c.opened_at)::date AS opened_month,
       c.wecom_external_userid IS NOT NULL AS is_contact, c.total_assets,
       (c.opened_at::timestamp {LOCAL}) AS opened_start,
       ((extract(year from c.opened_at) - {FIRST_YEAR}) * 12 + extract(month from c.opened_at))::int AS opened_mi
FROM customers_customer c
{{where}}
"""

FACTS_INSERT_SQL = f"""
WITH ev AS (
    SELECT e.customer_id,
           count(*) FILTER (WHERE e.type = 'app_login' AND e.occurred_at >= b.created_at
                            AND e.occurred_at < b.created_at + interval '30 days') AS visits,
           count(*) FILTER (WHERE e.type = 'news_read' AND e.occurred_at >= b.opened_start
                            AND e.occurred_at < b.opened_start + interval '30 days') AS news,
           count(*) FILTER (WHERE e.type = 'product_view' AND e.occurred_at >= b.opened_start
                            AND e.occurred_at < b.opened_start + interval '30 days') AS views,
           count(*) FILTER (WHERE e.type = 'app_login' AND e.occurred_at >= b.opened_start
                            AND e.occurred_at < b.opened_start + interval '30 days') AS logins,
           bit_or({_mask("e.occurred_at")}) FILTER (WHERE e.type = 'app_login') AS login_months
    FROM customers_behaviourevent e JOIN ana_base b ON b.id = e.customer_id
    WHERE e.type IN ('app_login', 'news_read', 'product_view')
    GROUP BY e.customer_id
),
tr AS (
    SELECT t.customer_id,
           count(*) FILTER (WHERE t.traded_at >= b.opened_start AND t.traded_at < b.opened_start + interval '90 days')
               AS early_trades,
           bit_or({_mask("t.traded_at")}) AS trade_months
    FROM customers_trade t JOIN ana_base b ON b.id = t.customer_id
    GROUP BY t.customer_id
)
INSERT INTO {FACT} (customer_id, branch_id, channel, signup_at, signup_month, stage, opened_at, opened_month,
                    is_contact, assets, visits_30d, news_30d, views_30d, logins_30d, second_trade_90d,
                    trade_months, login_months)
SELECT b.id, b.branch_id, b.channel, b.created_at, b.signup_month, b.stage, b.opened_at, b.opened_month,
       b.is_contact, b.total_assets, coalesce(ev.visits, 0), coalesce(ev.news, 0), coalesce(ev.views, 0),
       coalesce(ev.logins, 0), coalesce(tr.early_trades, 0) >= 2, coalesce(tr.trade_months, 0),
       coalesce(ev.login_months, 0)
FROM ana_base b LEFT JOIN ev ON ev.customer_id = b.id LEFT JOIN tr ON tr.customer_id = b.id
"""

# customers whose row no longer matches their fact (or who have none), and facts whose customer is gone
CHANGED_SQL = f"""
INSERT INTO ana_changed (id)
SELECT c.id FROM customers_customer c LEFT JOIN {FACT} f ON f.customer_id = c.id
WHERE f.customer_id IS NULL OR f.branch_id <> c.branch_id OR f.channel <> c.channel OR f.signup_at <> c.created_at
   OR f.stage <> coalesce(array_position(%(stages)s::text[], c.funnel_stage::text), 1) - 1
   OR f.opened_at IS DISTINCT FROM c.opened_at OR f.is_contact <> (c.wecom_external_userid IS NOT NULL)
   OR f.assets <> c.total_assets
UNION SELECT f.customer_id FROM {FACT} f WHERE NOT EXISTS (SELECT 1 FROM customers_customer c WHERE c.id = f.customer_id)
UNION SELECT t.customer_id FROM customers_trade t WHERE t.id > %(trade_from)s AND t.id <= %(trade_to)s
UNION SELECT e.customer_id FROM customers_behaviourevent e WHERE e.id > %(event_from)s AND e.id <= %(event_to)s
"""

ACQ_INSERT_SQL = f"""
INSERT INTO {ACQ} (month, branch_id, channel, signups, password_set, video_verified, opened, funded, contacts,
                   visits, assets)
SELECT f.signup_month, f.branch_id, f.channel, count(*), count(*) FILTER (WHERE f.stage >= 1),
       count(*) FILTER (WHERE f.stage >= 2), count(*) FILTER (WHERE f.stage >= 3), count(*) FILTER (WHERE f.stage >= 4),
       count(*) FILTER (WHERE f.is_contact), sum(f.visits_30d), sum(f.assets)
FROM {FACT} f {{join}}
GROUP BY 1, 2, 3
"""

COHORT_INSERT_SQL = f"""
WITH facts AS (SELECT f.* FROM {FACT} f {{join}} WHERE f.opened_month IS NOT NULL),
sizes AS (SELECT opened_month, branch_id, channel, count(*) AS clients FROM facts GROUP BY 1, 2, 3),
act AS (
    SELECT f.opened_month, f.branch_id, f.channel, n.n,
           count(*) FILTER (WHERE (f.trade_months >> n.n) & 1 = 1) AS traded,
           count(*) FILTER (WHERE (f.login_months >> n.n) & 1 = 1) AS logged_in,
           count(*) AS active
    FROM facts f
    CROSS JOIN LATERAL generate_series(0, least({MAX_OFFSET}, %(this_month)s - ((extract(year from f.opened_month)
                                       - {FIRST_YEAR}) * 12 + extract(month from f.opened_month))::int)) AS n(n)
    WHERE (f.trade_months | f.login_months) <> 0 AND ((f.trade_months | f.login_months) >> n.n) & 1 = 1
    GROUP BY 1, 2, 3, 4
),
cells AS (SELECT opened_month, branch_id, channel, n FROM act
          UNION SELECT opened_month, branch_id, channel, 0 FROM sizes)
INSERT INTO {COHORT} (opened_month, branch_id, channel, month_offset, clients, traded, logged_in, active)
SELECT c.opened_month, c.branch_id, c.channel, c.n, s.clients, coalesce(a.traded, 0), coalesce(a.logged_in, 0),
       coalesce(a.active, 0)
FROM cells c JOIN sizes s USING (opened_month, branch_id, channel)
LEFT JOIN act a USING (opened_month, branch_id, channel, n)
"""

MAGIC_INSERT_SQL = f"""
INSERT INTO {MAGIC} (opened_month, branch_id, channel, behaviour, bucket, clients, second_trade, funded, retained)
SELECT f.opened_month, f.branch_id, f.channel, b.behaviour, least(b.times, 10), count(*),
       count(*) FILTER (WHERE f.second_trade_90d), count(*) FILTER (WHERE f.stage >= 4),
       count(*) FILTER (WHERE ((f.trade_months | f.login_months) >> 3) & 1 = 1)
FROM {FACT} f {{join}}
CROSS JOIN LATERAL (VALUES ('news', f.news_30d), ('views', f.views_30d), ('logins', f.logins_30d)) AS b(behaviour, times)
WHERE f.opened_month IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
"""

SIGNUP_KEYS_JOIN = "JOIN ana_signup_keys k ON k.branch_id = f.branch_id AND k.channel = f.channel AND k.month = f.signup_month"
OPENED_KEYS_JOIN = "JOIN ana_opened_keys k ON k.branch_id = f.branch_id AND k.channel = f.channel AND k.month = f.opened_month"


def _try_lock(cursor) -> bool:
    cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(LOCK_KEY))
    return cursor.fetchone()[0]


def _max_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
    return cursor.fetchone()[0]


def _this_month_number() -> int:
    today = timezone.localdate()
    return (today.year - FIRST_YEAR) * 12 + today.month


def _summaries_rebuild(cursor) -> int:
    for table in (ACQ, COHORT, MAGIC):  # DELETE, not TRUNCATE: pages keep reading the old rows until commit
        cursor.execute(f"DELETE FROM {table}")
    written = 0
    for sql in (ACQ_INSERT_SQL, COHORT_INSERT_SQL, MAGIC_INSERT_SQL):
        cursor.execute(sql.format(join=""), {"this_month": _this_month_number()})
        written += cursor.rowcount
    return written


def _summaries_update(cursor) -> int:
    """Re-add the cells of the keys in ana_keys (the changed customers' old and new keys)."""
    cursor.execute("CREATE TEMP TABLE ana_signup_keys ON COMMIT DROP AS "
                   "SELECT DISTINCT branch_id, channel, signup_month AS month FROM ana_keys")
    cursor.execute("CREATE TEMP TABLE ana_opened_keys ON COMMIT DROP AS "
                   "SELECT DISTINCT branch_id, channel, opened_month AS month FROM ana_keys WHERE opened_month IS NOT NULL")
    cursor.execute("ANALYZE ana_signup_keys")
    cursor.execute("ANALYZE ana_opened_keys")
    cursor.execute(f"DELETE FROM {ACQ} a USING ana_signup_keys k "
                   "WHERE a.branch_id = k.branch_id AND a.channel = k.channel AND a.month = k.month")
    for table in (COHORT, MAGIC):
        cursor.execute(f"DELETE FROM {table} a USING ana_opened_keys k "
                       "WHERE a.branch_id = k.branch_id AND a.channel = k.channel AND a.opened_month = k.month")
    written = 0
    cursor.execute(ACQ_INSERT_SQL.format(join=SIGNUP_KEYS_JOIN))
    written += cursor.rowcount
    for sql in (COHORT_INSERT_SQL, MAGIC_INSERT_SQL):
        cursor.execute(sql.format(join=OPENED_KEYS_JOIN), {"this_month": _this_month_number()})
        written += cursor.rowcount
    return written


def analyses_refresh(*, full: bool = False) -> AnalysisRefresh | None:
    """Bring the summary tables up to date (see the module docstring); returns the recorded run, or None when
    another refresh holds the lock. A first run (no finished run yet) is always full."""
    started = time.monotonic()
    started_at = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        if not _try_lock(cursor):
            logger.info("analyses refresh skipped: another one is running")
            return None
        last = AnalysisRefresh.objects.filter(finished_at__isnull=False).order_by("-finished_at", "-id").first()
        full = full or last is None
        cursor.execute("SET LOCAL work_mem = '256MB'")
        # ON COMMIT DROP only fires at the outermost commit: a refresh inside a caller's transaction may follow another
        cursor.execute("DROP TABLE IF EXISTS ana_base, ana_changed, ana_keys, ana_signup_keys, ana_opened_keys")
        trade_to, event_to = _max_id(cursor, "customers_trade"), _max_id(cursor, "customers_behaviourevent")
        params = {"stages": FUNNEL_ORDER}
        if full:
            cursor.execute(f"DELETE FROM {FACT}")
            cursor.execute(BASE_SQL.format(where=""), params)
            changed = cursor.rowcount
            cursor.execute("ANALYZE ana_base")
            cursor.execute(FACTS_INSERT_SQL, {"months": month_starts()})
            written = _summaries_rebuild(cursor)
        else:
            cursor.execute("CREATE TEMP TABLE ana_changed (id bigint PRIMARY KEY) ON COMMIT DROP")
            cursor.execute(CHANGED_SQL, {**params, "trade_from": last.last_trade_id, "trade_to": trade_to,
                                         "event_from": last.last_event_id, "event_to": event_to})
            changed = cursor.rowcount
            written = 0
            if changed:
                cursor.execute("ANALYZE ana_changed")
                cursor.execute(f"CREATE TEMP TABLE ana_keys ON COMMIT DROP AS "
                               f"SELECT branch_id, channel, signup_month, opened_month FROM {FACT} f "
                               f"WHERE f.customer_id IN (SELECT id FROM ana_changed)")
                cursor.execute(f"DELETE FROM {FACT} WHERE customer_id IN (SELECT id FROM ana_changed)")
                cursor.execute(BASE_SQL.format(where="WHERE c.id IN (SELECT id FROM ana_changed)"), params)
                cursor.execute("ANALYZE ana_base")
                cursor.execute(FACTS_INSERT_SQL, {"months": month_starts()})
                cursor.execute("INSERT INTO ana_keys SELECT branch_id, channel, signup_month, opened_month FROM ana_base")
                written = _summaries_update(cursor)
        run = AnalysisRefresh.objects.create(
            mode=AnalysisRefresh.Mode.FULL if full else AnalysisRefresh.Mode.INCREMENTAL, started_at=started_at,
            finished_at=timezone.now(), last_trade_id=trade_to, last_event_id=event_to, customers_changed=changed,
            cells_rewritten=written, duration_ms=int((time.monotonic() - started) * 1000))
        AnalysisRefresh.objects.filter(finished_at__lt=run.finished_at - timedelta(days=KEEP_RUNS_DAYS)).delete()
    logger.info("analyses refresh (%s): %s customers, %s cells, %s ms", run.mode, changed, written, run.duration_ms)
    return run


def analyses_last_refresh() -> AnalysisRefresh | None:
    return AnalysisRefresh.objects.filter(finished_at__isnull=False).order_by("-finished_at", "-id").first()
