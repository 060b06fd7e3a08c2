"""Churn warning (流失预警): an explainable score per client, computed in SQL for every client at once.

Score (0–100, the sum of the reasons' points, capped): App activity in the last 30 days against the monthly
average of the 90 days before; trades in the last 30 days against the 90 before; days since the last trade;
money going out (net selling, and ``funds_out`` events' ``properties.amount`` when the CRM pushes them)
relative to the assets; a drop of the value tier in the last 90 days. Level: high ≥ HIGH_FROM, medium ≥
MEDIUM_FROM. Every reason is kept as {code, label, points}, so the page can say why.

``churn_scores_compute`` upserts ``ChurnScore`` for every opened account in one statement, gives the
high-level clients the ``churn_risk`` tag (SOP journeys triggered by churn risk start from it) with their
reasons as evidence, removes it from those who dropped out, and stores the per-advisor summary the page
reads. ``churn_backtest_compute`` scores as of the start of last quarter with only earlier data and
measures the churn that followed (churn_backtest.py).
"""

import json
import logging
import time
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.scoping import scope_for
from dashboards.models import ChurnScore

logger = logging.getLogger(__name__)

HIGH_FROM = 60
MEDIUM_FROM = 30
SUMMARY_KEY = "people:churn:summary"
SUMMARY_TTL = 3 * 24 * 3600
CHURN_TAG_CODE = "churn_risk"
SYSTEM_ACTOR = "system:churn"
REASON_CODES = {
    "activity_drop": "App 活跃下降", "trade_drop": "交易减少", "trade_recency": "久未交易",
    "asset_outflow": "资金流出", "tier_drop": "分层下降",
}

# Features as of %(as_of)s from data strictly before it. {population} is a SELECT of (id, total_assets).
_FEATURES_SQL = """
WITH pop AS ({population}),
ev AS (
    SELECT e.customer_id,
           count(*) FILTER (WHERE e.occurred_at >= %(d30)s) AS a30,
           count(*) FILTER (WHERE e.occurred_at < %(d30)s) AS p90,
           coalesce(sum(CASE WHEN e.type = 'funds_out' AND e.occurred_at >= %(d30)s
                              AND (e.properties ->> 'amount') ~ '^[0-9]{{1,15}}(\\.[0-9]+)?$'
                             THEN (e.properties ->> 'amount')::numeric END), 0) AS out30
    FROM customers_behaviourevent e
    WHERE e.occurred_at >= %(d120)s AND e.occurred_at < %(as_of)s
    GROUP BY e.customer_id
),
tr AS (
    SELECT t.customer_id,
           count(*) FILTER (WHERE t.traded_at >= %(d30)s) AS t30,
           count(*) FILTER (WHERE t.traded_at >= %(d120)s AND t.traded_at < %(d30)s) AS tp90,
           coalesce(sum(t.amount) FILTER (WHERE t.traded_at >= %(d30)s AND t.side = 'sell'), 0)
             - coalesce(sum(t.amount) FILTER (WHERE t.traded_at >= %(d30)s AND t.side = 'buy'), 0) AS net_sell30,
           max(t.traded_at) AS last_trade
    FROM customers_trade t
    WHERE t.traded_at >= %(d365)s AND t.traded_at < %(as_of)s
    GROUP BY t.customer_id
),
td AS (
    SELECT DISTINCT ON (h.customer_id) h.customer_id, h.from_code, h.to_code
    FROM tagging_customertierhistory h
    WHERE h.at >= %(d90)s AND h.at < %(as_of)s
    ORDER BY h.customer_id, h.at DESC
),
tiers AS (SELECT * FROM unnest(%(tier_codes)s::text[], %(tier_ranks)s::int[], %(tier_labels)s::text[])
          AS x(code, rank, label)),
f AS (
    SELECT p.id, coalesce(ev.a30, 0) AS a30, coalesce(ev.p90, 0) AS p90, coalesce(tr.t30, 0) AS t30,
           coalesce(tr.tp90, 0) AS tp90, greatest(coalesce(tr.net_sell30, 0), 0) + coalesce(ev.out30, 0) AS outflow,
           p.total_assets AS assets,
           floor(extract(epoch FROM %(as_of)s - tr.last_trade) / 86400)::int AS idle_days,
           rf.rank AS from_rank, rt.rank AS to_rank, rf.label AS from_label, rt.label AS to_label
    FROM pop p
    LEFT JOIN ev ON ev.customer_id = p.id
    LEFT JOIN tr ON tr.customer_id = p.id
    LEFT JOIN td ON td.customer_id = p.id
    LEFT JOIN tiers rf ON rf.code = td.from_code
    LEFT JOIN tiers rt ON rt.code = td.to_code
),
scored AS (
    SELECT f.id, s.score,
           CASE WHEN s.score >= %(high)s THEN 'high' WHEN s.score >= %(medium)s THEN 'medium' ELSE 'low' END AS level,
           s.reasons
    FROM f
    CROSS JOIN LATERAL (
        SELECT least(100, coalesce(sum(r.points), 0))::int AS score,
               coalesce(jsonb_agg(jsonb_build_object('code', r.code, 'label', r.label, 'points', r.points)
                                  ORDER BY r.points DESC, r.code), '[]'::jsonb) AS reasons
        FROM (VALUES
            ('activity_drop',
             '近30天 App 行为 ' || f.a30 || ' 次，前90天月均 ' || round(f.p90 / 3.0, 1) || ' 次（下降 '
               || round(100 - f.a30 * 300.0 / greatest(f.p90, 1)) || '%%）',
             CASE WHEN f.p90 < 6 THEN 0 WHEN f.a30 * 3.0 <= 0.2 * f.p90 THEN 35
                  WHEN f.a30 * 3.0 <= 0.5 * f.p90 THEN 20 WHEN f.a30 * 3.0 <= 0.7 * f.p90 THEN 10 ELSE 0 END),
            ('trade_drop',
             '近30天交易 ' || f.t30 || ' 笔，前90天月均 ' || round(f.tp90 / 3.0, 1) || ' 笔',
             CASE WHEN f.tp90 < 3 THEN 0 WHEN f.t30 = 0 THEN 15 WHEN f.t30 * 3.0 <= 0.3 * f.tp90 THEN 8 ELSE 0 END),
            ('trade_recency',
             '距上次交易 ' || f.idle_days || ' 天',
             CASE WHEN f.idle_days IS NULL THEN 0 WHEN f.idle_days >= 90 THEN 25 WHEN f.idle_days >= 60 THEN 15
                  WHEN f.idle_days >= 30 THEN 8 ELSE 0 END),
            ('asset_outflow',
             '近30天资金流出约 ¥' || to_char(f.outflow, 'FM999,999,999,990') || '（约占资产 '
               || round(100 * f.outflow / greatest(f.assets + f.outflow, 1)) || '%%）',
             CASE WHEN f.outflow < 1000 THEN 0
                  WHEN f.outflow >= 0.5 * (f.assets + f.outflow) THEN 30
                  WHEN f.outflow >= 0.2 * (f.assets + f.outflow) THEN 20
                  WHEN f.outflow >= 0.1 * (f.assets + f.outflow) AND f.outflow >= 10000 THEN 10 ELSE 0 END),
            ('tier_drop',
             '分层由「' || coalesce(f.from_label, '') || '」降为「' || coalesce(f.to_label, '') || '」',
             CASE WHEN f.to_rank > f.from_rank THEN 15 ELSE 0 END)
        ) AS r(code, label, points)
        WHERE r.points > 0
    ) s
)
"""


def _windows(as_of: datetime) -> dict:
    return {"as_of": as_of, "d30": as_of - timedelta(days=30), "d90": as_of - timedelta(days=90),
            "d120": as_of - timedelta(days=120), "d365": as_of - timedelta(days=365),
            "as_of_date": timezone.localdate(as_of), "high": HIGH_FROM, "medium": MEDIUM_FROM}


def _tier_params() -> dict:
    from tagging.tiers import tier_definitions

    definitions = list(tier_definitions().values())
    return {"tier_codes": [d.code for d in definitions], "tier_ranks": [d.rank for d in definitions],
            "tier_labels": [d.label for d in definitions]}


def features_sql(population: str) -> str:
    """The scoring CTEs (ending in ``scored(id, score, level, reasons)``) over ``population``."""
    return _FEATURES_SQL.format(population=population)


def score_params(as_of: datetime) -> dict:
    return {**_windows(as_of), **_tier_params()}


# --- the nightly run -------------------------------------------------------------------------------

def churn_tag():
    """The ``churn_risk`` tag (service-strategy category), created on first use; SOP churn triggers watch it."""
    from tagging.models import Tag, TagCategory

    tag = Tag.objects.filter(code=CHURN_TAG_CODE).first()
    if tag is None:
        category = (TagCategory.objects.filter(kind=TagCategory.Kind.SERVICE).first()
                    or TagCategory.objects.order_by("position").first())
        tag, _ = Tag.objects.get_or_create(code=CHURN_TAG_CODE, defaults={
            "name": "流失风险", "category": category,
            "description": f"流失预警分 ≥ {HIGH_FROM}（看板·流失预警每日计算，依据为各项原因）"})
    return tag


def _scores_upsert(*, now: datetime) -> int:
    population = ("SELECT c.id, c.total_assets FROM customers_customer c "
                  "WHERE c.opened_at IS NOT NULL AND c.opened_at <= %(as_of_date)s")
    with connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")
        cur.execute(features_sql(population) + """
            INSERT INTO dashboards_churnscore (customer_id, score, level, reasons, computed_at)
            SELECT id, score, level, reasons, %(as_of)s FROM scored
            ON CONFLICT (customer_id) DO UPDATE
               SET score = EXCLUDED.score, level = EXCLUDED.level, reasons = EXCLUDED.reasons,
                   computed_at = EXCLUDED.computed_at
        """, score_params(now))
        scored = cur.rowcount
        # accounts no longer open (or whose opening date was corrected) keep no stale score
        cur.execute("DELETE FROM dashboards_churnscore WHERE computed_at < %s", [now])
    return scored


def _tag_sync(*, tag) -> dict:
    """High level → tag, with each client's own reasons as evidence (source rule through the one tag writer, so a
    manual ``churn_risk`` is never overridden or taken away, and every change is in the tag history); dropped
    out → untag."""
    from customers.models import Customer
    from tagging.models import TagSource
    from tagging.writer import customer_tags_set

    high = list(ChurnScore.objects.filter(level=ChurnScore.Level.HIGH).values_list("customer_id", "score", "reasons"))
    evidence = [(cid, f"流失预警分 {score}：" + "；".join(r.get("label", "") for r in reasons),
                 {"score": score, "reasons": reasons}) for cid, score, reasons in high]
    added = customer_tags_set(tag=tag, source=TagSource.RULE, actor=SYSTEM_ACTOR, per_customer=evidence,
                              overwrite=False) if evidence else None
    dropped = Customer.objects.filter(tags__tag=tag, tags__source=TagSource.RULE).exclude(
        pk__in=ChurnScore.objects.filter(level=ChurnScore.Level.HIGH).values("customer_id"))
    removed = customer_tags_set(tag=tag, source=TagSource.RULE, actor=SYSTEM_ACTOR, add=False, customers=dropped,
                                only_source=TagSource.RULE, evidence=f"流失预警分已低于 {HIGH_FROM}")
    return {"tag_added": len(added.added) if added else 0, "tag_removed": len(removed.removed)}


def churn_summary_compute(*, now: datetime | None = None, run: dict | None = None) -> dict:
    """Clients per (branch, advisor) and score bucket (0–9, tens): what the page's chart and advisor table
    sum up for the viewer's scope."""
    with connection.cursor() as cur:
        cur.execute("""
            SELECT c.branch_id, c.advisor_id, least(cs.score / 10, 9) AS bucket, count(*)
            FROM dashboards_churnscore cs JOIN customers_customer c ON c.id = cs.customer_id
            GROUP BY 1, 2, 3
        """)
        rows: dict[tuple, list[int]] = {}
        for branch_id, advisor_id, bucket, n in cur.fetchall():
            rows.setdefault((branch_id, advisor_id), [0] * 10)[bucket] += n
        cur.execute("SELECT max(computed_at) FROM dashboards_churnscore")
        computed_at = cur.fetchone()[0]
    summary = {"computed_at": computed_at or now, "run": run or {},
               "rows": [{"branch_id": b, "advisor_id": a, "buckets": h} for (b, a), h in rows.items()]}
    cache.set(SUMMARY_KEY, summary, SUMMARY_TTL)
    return summary


def churn_scores_compute(*, now: datetime | None = None) -> dict:
    """Score every opened account as of ``now``, sync the churn_risk tag, store the summary. Safe to rerun."""
    started = time.monotonic()
    now = now or timezone.now()
    tag = churn_tag()
    with transaction.atomic():
        with connection.cursor() as cur:  # one run at a time; a second waits, then recomputes (harmless)
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [0x636875726E])
        scored = _scores_upsert(now=now)
        sync = _tag_sync(tag=tag)
    run = {"scored": scored, **sync, "seconds": round(time.monotonic() - started, 1), "at": now.isoformat()}
    churn_summary_compute(now=now, run=run)
    logger.info("churn scores: %s", run)
    return run


# --- reading, in the viewer's scope -------------------------------------------------------------------

def level_of_bucket(bucket: int) -> str:
    return "high" if bucket * 10 >= HIGH_FROM else "medium" if bucket * 10 >= MEDIUM_FROM else "low"


def rows_in_scope(rows: list[dict], user) -> list[dict]:
    """Summary rows (keyed by the clients' branch and advisor) that ``user`` may see."""
    scope = scope_for(user)
    if scope.everything:
        return rows
    if scope.advisor_id is not None:
        return [r for r in rows if r["advisor_id"] == scope.advisor_id]
    if scope.branch_id is not None:
        return [r for r in rows if r["branch_id"] == scope.branch_id]
    return []


def churn_summary(*, user) -> dict:
    """Distribution, level counts and per-advisor counts for ``user``'s scope, from the stored summary
    (recomputed from the scores when the cache lost it)."""
    from core.models import Branch, User

    summary = cache.get(SUMMARY_KEY) or churn_summary_compute()
    rows = rows_in_scope(summary["rows"], user)
    buckets = [0] * 10
    advisors: dict = {}
    for row in rows:
        per = advisors.setdefault((row["branch_id"], row["advisor_id"]), {"high": 0, "medium": 0, "low": 0})
        for bucket, n in enumerate(row["buckets"]):
            buckets[bucket] += n
            per[level_of_bucket(bucket)] += n
    levels = {lv: sum(n for b, n in enumerate(buckets) if level_of_bucket(b) == lv) for lv in ("high", "medium", "low")}
    names = {u.pk: str(u) for u in User.objects.filter(pk__in={a for _, a in advisors if a})}
    branches = {b.pk: b.name for b in Branch.objects.filter(pk__in={b for b, _ in advisors})}
    table = [{"branch_id": b, "branch": branches.get(b, ""), "advisor_id": a, "advisor": names.get(a, "") if a else "",
              **counts, "total": sum(counts.values())}
             for (b, a), counts in advisors.items() if counts["high"] or counts["medium"]]
    table.sort(key=lambda r: (-r["high"], -r["medium"], r["branch"], r["advisor"]))
    return {"computed_at": summary["computed_at"], "run": summary.get("run", {}), "buckets": buckets,
            "levels": levels, "total": sum(buckets), "advisors": table}


def at_risk_clients(*, user, levels: list[str], advisor_id: int | None = None):
    """ChurnScore rows in scope at the given levels, highest score first, with client, advisor and tier."""
    qs = ChurnScore.objects.visible_to(user).filter(level__in=levels)
    if advisor_id is not None:
        qs = qs.filter(customer__advisor_id=advisor_id)
    return (qs.select_related("customer", "customer__advisor", "customer__branch", "customer__tier")
            .order_by("-score", "customer_id"))


def name_shown(name: str, *, personal: bool) -> str:
    """The client's name as this viewer may see it: whole for roles with personal data, else 张**."""
    if personal or not name:
        return name
    return name[:1] + "*" * max(len(name) - 1, 1)


def reasons_text(reasons: list[dict]) -> str:
    return "；".join(f"{r.get('label', '')}（+{r.get('points', 0)}）" for r in reasons)


def reasons_json(reasons) -> str:
    return json.dumps(reasons, ensure_ascii=False)


# --- backtest: last quarter's scores against the churn that followed ------------------------------------

BACKTEST_KEY = "people:churn:backtest"
BACKTEST_TTL = 8 * 24 * 3600

_BACKTEST_POPULATION = """
    SELECT c.id, c.total_assets FROM customers_customer c
    WHERE c.opened_at IS NOT NULL AND c.opened_at < %(as_of_date)s
      AND (EXISTS (SELECT 1 FROM customers_trade t
                   WHERE t.customer_id = c.id AND t.traded_at >= %(d90)s AND t.traded_at < %(as_of)s)
           OR EXISTS (SELECT 1 FROM customers_behaviourevent e
                      WHERE e.customer_id = c.id AND e.occurred_at >= %(d90)s AND e.occurred_at < %(as_of)s))
"""
_BACKTEST_SQL = """,
outcome AS (
    SELECT s.id, s.score, s.level,
           NOT EXISTS (SELECT 1 FROM customers_trade t
                       WHERE t.customer_id = s.id AND t.traded_at >= %(as_of)s AND t.traded_at < %(until)s)
           AND NOT EXISTS (SELECT 1 FROM customers_behaviourevent e
                           WHERE e.customer_id = s.id AND e.occurred_at >= %(as_of)s AND e.occurred_at < %(until)s)
           AS churned
    FROM scored s
),
ranked AS (SELECT o.*, ntile(10) OVER (ORDER BY o.score DESC, o.id) AS decile FROM outcome o)
SELECT decile, count(*), count(*) FILTER (WHERE churned), min(score), max(score),
       count(*) FILTER (WHERE level = 'high'), count(*) FILTER (WHERE level = 'high' AND churned),
       count(*) FILTER (WHERE level = 'medium'), count(*) FILTER (WHERE level = 'medium' AND churned)
FROM ranked GROUP BY decile ORDER BY decile
"""


def quarter_bounds(today) -> tuple:
    """(start of last quarter, start of this quarter) as dates."""
    this_start = today.replace(month=3 * ((today.month - 1) // 3) + 1, day=1)
    month, year = this_start.month - 3, this_start.year
    if month < 1:
        month, year = month + 12, year - 1
    return this_start.replace(year=year, month=month), this_start


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def churn_backtest_compute(*, today=None) -> dict:
    """Score every client active in the 90 days before D (start of last quarter) as of D, from data before D
    only; churned = no trade and no App behaviour at all during [D, start of this quarter). Returns and stores
    precision/recall of the high level and the churn rate (and lift) per score decile."""
    started = time.monotonic()
    today = today or timezone.localdate()
    start, end = quarter_bounds(today)
    tz = timezone.get_current_timezone()
    as_of = datetime(start.year, start.month, start.day, tzinfo=tz)
    until = datetime(end.year, end.month, end.day, tzinfo=tz)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")
        cur.execute(features_sql(_BACKTEST_POPULATION) + _BACKTEST_SQL, {**score_params(as_of), "until": until})
        rows = cur.fetchall()
    n = sum(r[1] for r in rows)
    churned = sum(r[2] for r in rows)
    base = _rate(churned, n)
    high_n, high_c = sum(r[5] for r in rows), sum(r[6] for r in rows)
    medium_n, medium_c = sum(r[7] for r in rows), sum(r[8] for r in rows)
    deciles = [{"decile": d, "n": dn, "churned": dc, "rate": _rate(dc, dn), "min": lo, "max": hi,
                "lift": round(dc / dn / base, 2) if dn and base else None}
               for d, dn, dc, lo, hi, *_ in rows]
    result = {
        "as_of": start, "until": end, "population": n, "churned": churned, "base_rate": base,
        "levels": {"high": {"n": high_n, "churned": high_c, "rate": _rate(high_c, high_n)},
                   "medium": {"n": medium_n, "churned": medium_c, "rate": _rate(medium_c, medium_n)},
                   "low": {"n": n - high_n - medium_n, "churned": churned - high_c - medium_c,
                           "rate": _rate(churned - high_c - medium_c, n - high_n - medium_n)}},
        "precision_high": _rate(high_c, high_n), "recall_high": _rate(high_c, churned),
        "precision_at_risk": _rate(high_c + medium_c, high_n + medium_n),
        "recall_at_risk": _rate(high_c + medium_c, churned),
        "deciles": deciles, "computed_at": timezone.now(), "seconds": round(time.monotonic() - started, 1),
    }
    cache.set(BACKTEST_KEY, result, BACKTEST_TTL)
    return result


def churn_backtest() -> dict | None:
    """The stored backtest, or None (then the page asks for it to be computed)."""
    return cache.get(BACKTEST_KEY)
