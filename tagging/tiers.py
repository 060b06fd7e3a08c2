"""RFM value tiers: the recompute (services) and what pages read (selectors).

Per customer, over the scheme's window ending on ``as_of`` (a date in Asia/Shanghai): R = whole
days from the last trade date to ``as_of``, F = number of trades, M = sum of amounts (buys and
sells). A trade is in the window when its Asia/Shanghai date d satisfies
``as_of - window_days < d <= as_of``. A customer is high on R when R < threshold, high on F or M
when strictly above it. Thresholds are the mean (default) or median over customers with at least
one trade in the window, or the scheme's fixed values. (R, F, M) highs map to a code through the
scheme's TierDefinition rows; customers without a trade in the window get the definition whose
highs are all NULL (``no_trade``).

Stored thresholds are rounded so that comparing with the stored value gives exactly the result
of comparing with the exact mean/median: R is an integer and F an integer, M a multiple of 0.01,
so R's threshold is rounded up and F's and M's down to 0.01. The incremental run reuses them.

Concurrency: one PostgreSQL advisory lock key. A full run holds it exclusively for its whole
duration (session lock); a second full run does not wait, it raises TierRunBusyError (the Celery
task retries later). Incremental runs take it shared for their transaction, so they never overlap
a full run (they raise TierRunBusyError too), and serialise among themselves on a second key.

Writes are versioned: a CustomerTier row is rewritten only when its code, R, F or M differs
(``as_of`` then says when they were last recomputed with a change, ``run`` and ``changed_at`` when
the code last changed), so a rerun on the same data writes nothing. Every tier change writes one
CustomerTierHistory row in the same statement, and core.events.TierChanged(run_id) is emitted (its
subscribers run after commit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.http import Http404
from django.utils import timezone

from core.access import roles_for
from core.errors import ApplicationError
from core.events import TierChanged, emit
from core.scoping import scope_for
from core.services import audit_record
from customers.models import Customer
from tagging.models import CustomerTier, CustomerTierHistory, TierDefinition, TierRun, TierScheme

logger = logging.getLogger(__name__)

TIER_TIME_ZONE = "Asia/Shanghai"
# pg advisory lock keys ("tiers" / "tiers+1" as integers); any other lock user must pick another key
ADVISORY_LOCK_KEY = 0x7469657273
INCREMENTAL_LOCK_KEY = ADVISORY_LOCK_KEY + 1
# usernames cannot contain ":", so a user's full run is never mistaken for an incremental one
INCREMENTAL_REQUESTER = "incremental:"
STALE_RUN_AFTER = timedelta(hours=3)  # a RUNNING run older than this died with its worker

TIER_VIEW_ROLES = roles_for("tiers")
TIER_RUN_ROLES = roles_for("tiers.run")
TIER_STRATEGY_ROLES = roles_for("tiers.strategy")
STRATEGY_FIELDS = ("channels", "cadence", "products", "activities", "suggested_sop")
FORBIDDEN_PROMISES = ("保本", "稳赚", "无风险", "保证收益", "零风险", "包赚")

class TierError(StrEnum):
    RUN_IN_PROGRESS = "tier_run_in_progress"
    SCHEME_MISSING = "tier_scheme_missing"
    SCHEME_INCOMPLETE = "tier_scheme_incomplete"
    FIXED_THRESHOLDS_MISSING = "tier_fixed_thresholds_missing"
    RUN_NOT_ALLOWED = "tier_run_not_allowed"
    STRATEGY_INVALID = "tier_strategy_invalid"


class TierRunBusyError(ApplicationError):
    """Another tier run holds the advisory lock; nothing was computed."""

    status_code = 409

    def __init__(self, message: str = "另一个分层计算正在进行，请稍后再试"):
        super().__init__(TierError.RUN_IN_PROGRESS, message)


# --- schemes --------------------------------------------------------------------------------

def tier_scheme_active() -> TierScheme:
    scheme = TierScheme.objects.filter(active=True).first()
    if scheme is None:
        raise ApplicationError(TierError.SCHEME_MISSING, "没有启用的分层方案")
    return scheme


def tier_scheme_ensure_default() -> TierScheme:
    """The active scheme, creating the classic eight tiers + no_trade (tagging.defaults) when none is active."""
    from django.apps import apps

    from tagging.defaults import defaults_load

    scheme = TierScheme.objects.filter(active=True).first()
    if scheme is None:
        defaults_load(apps.get_model)
        scheme = TierScheme.objects.filter(active=True).first() or TierScheme.objects.get(code="rfm8")
    return scheme


def _tier_key(r_high: bool | None, f_high: bool | None, m_high: bool | None) -> int | None:
    if r_high is None and f_high is None and m_high is None:
        return -1
    if None in (r_high, f_high, m_high):
        return None
    return int(r_high) * 4 + int(f_high) * 2 + int(m_high)


def tier_scheme_validate(*, scheme: TierScheme) -> None:
    """Every (R, F, M) combination and "no trade" must map to exactly one tier, or customers would be lost."""
    seen: dict[int, str] = {}
    problems = []
    for d in scheme.tiers.all():
        key = _tier_key(d.r_high, d.f_high, d.m_high)
        if key is None:
            problems.append(f"{d.code}: R/F/M 须同时为空（无交易）或同时有值")
        elif key in seen:
            problems.append(f"{d.code} 与 {seen[key]} 的 R/F/M 组合相同")
        else:
            seen[key] = d.code
    missing = [k for k in range(-1, 8) if k not in seen]
    if missing:
        problems.append("缺少组合：" + "、".join(
            "无交易" if k == -1 else f"R{'高' if k & 4 else '低'}F{'高' if k & 2 else '低'}M{'高' if k & 1 else '低'}"
            for k in missing))
    if problems:
        raise ApplicationError(TierError.SCHEME_INCOMPLETE, "分层方案不完整：" + "；".join(problems), problems)
    if scheme.method == TierScheme.Method.FIXED and None in (scheme.fixed_r, scheme.fixed_f, scheme.fixed_m):
        raise ApplicationError(TierError.FIXED_THRESHOLDS_MISSING, "固定阈值方案须填写 R、F、M 三个阈值",
                               [{"field": f} for f in ("fixed_r", "fixed_f", "fixed_m")
                                if getattr(scheme, f) is None])


# --- the set-based computation -----------------------------------------------------------------

_THRESHOLDS_SQL = {
    # exact mean/median, rounded so that comparing with the rounded value is exact (see module doc)
    TierScheme.Method.MEAN: "SELECT ceil(avg(r) * 100) / 100 AS r, floor(avg(f) * 100) / 100 AS f, "
                            "floor(avg(m) * 100) / 100 AS m FROM rfm",
    TierScheme.Method.MEDIAN: "SELECT ceil((percentile_cont(0.5) WITHIN GROUP (ORDER BY r))::numeric * 100) / 100 AS r, "
                              "floor((percentile_cont(0.5) WITHIN GROUP (ORDER BY f))::numeric * 100) / 100 AS f, "
                              "floor((percentile_cont(0.5) WITHIN GROUP (ORDER BY m))::numeric * 100) / 100 AS m "
                              "FROM rfm",
    "given": "SELECT %(thr_r)s::numeric AS r, %(thr_f)s::numeric AS f, %(thr_m)s::numeric AS m",
}

_RUN_SQL = """
WITH rfm AS (
    SELECT t.customer_id,
           %(as_of)s::date - (max(t.traded_at) AT TIME ZONE %(tz)s)::date AS r,
           count(*)::int AS f,
           sum(t.amount) AS m
    FROM customers_trade t
    WHERE t.traded_at >= %(window_start)s AND t.traded_at < %(window_end)s {trade_filter}
    GROUP BY t.customer_id
),
thresholds AS ({thresholds}),
classified AS MATERIALIZED (
    SELECT c.id AS customer_id, rfm.r, coalesce(rfm.f, 0) AS f, coalesce(rfm.m, 0) AS m,
           CASE WHEN rfm.customer_id IS NULL THEN -1
                ELSE (rfm.r < th.r)::int * 4 + (rfm.f > th.f)::int * 2 + (rfm.m > th.m)::int END AS tier_key,
           ct.code AS old_code, ct.r AS old_r, ct.f AS old_f, ct.m AS old_m
    FROM customers_customer c
    LEFT JOIN rfm ON rfm.customer_id = c.id
    LEFT JOIN tagging_customertier ct ON ct.customer_id = c.id
    CROSS JOIN thresholds th
    {customer_filter}
),
definitions AS (
    SELECT code, CASE WHEN r_high IS NULL THEN -1
                      ELSE r_high::int * 4 + f_high::int * 2 + m_high::int END AS tier_key
    FROM tagging_tierdefinition WHERE scheme_id = %(scheme_id)s
),
target AS MATERIALIZED (
    SELECT cl.customer_id, d.code, cl.r, cl.f, cl.m, cl.old_code, cl.old_r, cl.old_f, cl.old_m
    FROM classified cl JOIN definitions d ON d.tier_key = cl.tier_key
),
upserted AS (
    INSERT INTO tagging_customertier AS ct (customer_id, code, r, f, m, run_id, as_of, changed_at)
    SELECT customer_id, code, r, f, m, %(run_id)s, %(as_of)s, now()
    FROM target
    WHERE (old_code, old_r, old_f, old_m) IS DISTINCT FROM (code, r, f, m)
    ON CONFLICT (customer_id) DO UPDATE
        SET code = EXCLUDED.code, r = EXCLUDED.r, f = EXCLUDED.f, m = EXCLUDED.m, as_of = EXCLUDED.as_of,
            run_id = CASE WHEN ct.code IS DISTINCT FROM EXCLUDED.code THEN EXCLUDED.run_id ELSE ct.run_id END,
            changed_at = CASE WHEN ct.code IS DISTINCT FROM EXCLUDED.code THEN EXCLUDED.changed_at
                              ELSE ct.changed_at END
        WHERE (ct.code, ct.r, ct.f, ct.m) IS DISTINCT FROM (EXCLUDED.code, EXCLUDED.r, EXCLUDED.f, EXCLUDED.m)
    RETURNING 1
),
history AS (
    INSERT INTO tagging_customertierhistory (customer_id, run_id, from_code, to_code, at)
    SELECT customer_id, %(run_id)s, coalesce(old_code, ''), code, now()
    FROM target
    WHERE old_code IS DISTINCT FROM code
    RETURNING 1
)
SELECT th.r, th.f, th.m,
       (SELECT coalesce(json_object_agg(code, n), '{{}}'::json)
          FROM (SELECT code, count(*) AS n FROM target GROUP BY code) per_code),
       (SELECT count(*) FROM history),
       (SELECT count(*) FROM upserted)
FROM thresholds th
"""
# One full run sorts and hashes a million customers; in memory that is several times faster.
TIER_RUN_WORK_MEM = "256MB"


def tier_window(*, as_of: date, window_days: int) -> tuple[datetime, datetime]:
    """[start, end) instants of the window: Asia/Shanghai dates in (as_of - window_days, as_of]."""
    tz = ZoneInfo(TIER_TIME_ZONE)
    start = datetime.combine(as_of - timedelta(days=window_days - 1), dt_time.min, tzinfo=tz)
    end = datetime.combine(as_of + timedelta(days=1), dt_time.min, tzinfo=tz)
    return start, end


def _run_statement(*, run: TierRun, scheme_id: int, thresholds: str, customer_ids: list[int] | None = None,
                   given: tuple | None = None) -> dict:
    start, end = tier_window(as_of=run.as_of, window_days=run.window_days)
    params = {"as_of": run.as_of, "tz": TIER_TIME_ZONE, "window_start": start, "window_end": end,
              "scheme_id": scheme_id, "run_id": run.pk}
    trade_filter = customer_filter = ""
    if customer_ids is not None:
        params["ids"] = customer_ids
        trade_filter = "AND t.customer_id = ANY(%(ids)s::bigint[])"
        customer_filter = "WHERE c.id = ANY(%(ids)s::bigint[])"
    if given is not None:
        params["thr_r"], params["thr_f"], params["thr_m"] = given
    sql = _RUN_SQL.format(thresholds=thresholds, trade_filter=trade_filter, customer_filter=customer_filter)
    with connection.cursor() as cursor:
        if customer_ids is None:
            cursor.execute(f"SET LOCAL work_mem = '{TIER_RUN_WORK_MEM}'")
        cursor.execute(sql, params)
        thr_r, thr_f, thr_m, counts, changed, written = cursor.fetchone()
    cents = Decimal("0.01")  # already whole cents (see the module doc); this only drops trailing zeros
    thr_r, thr_f, thr_m = (None if v is None else Decimal(v).quantize(cents) for v in (thr_r, thr_f, thr_m))
    return {"threshold_r": thr_r, "threshold_f": thr_f, "threshold_m": thr_m, "counts": counts or {},
            "changed": changed, "written": written}


def _emit_tier_changed(run_id: int) -> None:
    emit(TierChanged(run_id=run_id))


def _try_lock(sql: str, key: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
        return bool(cursor.fetchone()[0])


@contextmanager
def _full_run_lock() -> Iterator[None]:
    if not _try_lock("SELECT pg_try_advisory_lock(%s)", ADVISORY_LOCK_KEY):
        raise TierRunBusyError()
    try:
        yield
    finally:
        try:
            _try_lock("SELECT pg_advisory_unlock(%s)", ADVISORY_LOCK_KEY)
        except DatabaseError:  # the connection is gone, and its session lock with it
            logger.warning("tier run lock was not released explicitly", exc_info=True)


def _run_progress(run: TierRun, progress: int) -> None:
    run.progress = progress
    TierRun.objects.filter(pk=run.pk).update(progress=progress)


def _run_fail(run: TierRun, message: str) -> None:
    run.status, run.error, run.finished_at = TierRun.Status.FAILED, message[:2000], timezone.now()
    TierRun.objects.filter(pk=run.pk).update(status=run.status, error=run.error, finished_at=run.finished_at)


def tier_run_compute(*, as_of: date | None = None, requested_by: str = "system", scheme: TierScheme | None = None,
                     run: TierRun | None = None) -> TierRun:
    """Recompute every customer's tier in one SQL statement and return the finished run.

    ``as_of`` defaults to today in Asia/Shanghai and ``scheme`` to the active one; a ``run`` created
    by tier_run_start brings both. Idempotent: rerunning with the same data and ``as_of`` writes
    nothing and records no change. Raises TierRunBusyError while another run holds the lock (a
    given ``run`` then stays RUNNING for the caller to retry) and ApplicationError for an
    unusable scheme (a given ``run`` is then marked FAILED).
    """
    if run is not None:
        scheme, as_of = run.scheme, run.as_of
    try:
        scheme = scheme or tier_scheme_active()
        tier_scheme_validate(scheme=scheme)
    except ApplicationError as exc:
        if run is not None:
            _run_fail(run, exc.message)
        raise
    as_of = as_of or timezone.localdate()
    with _full_run_lock():
        if run is None:
            run = TierRun.objects.create(scheme=scheme, as_of=as_of, window_days=scheme.window_days,
                                         method=scheme.method, requested_by=requested_by[:150])
        else:
            run.window_days, run.method, run.error = scheme.window_days, scheme.method, ""
            TierRun.objects.filter(pk=run.pk).update(window_days=run.window_days, method=run.method, error="")
        _run_progress(run, 10)
        started = time.monotonic()
        given = None
        if scheme.method == TierScheme.Method.FIXED:
            thresholds, given = _THRESHOLDS_SQL["given"], (scheme.fixed_r, scheme.fixed_f, scheme.fixed_m)
        else:
            thresholds = _THRESHOLDS_SQL[scheme.method]
        try:
            with transaction.atomic():
                result = _run_statement(run=run, scheme_id=scheme.pk, thresholds=thresholds, given=given)
                run.threshold_r, run.threshold_f, run.threshold_m = (
                    result["threshold_r"], result["threshold_f"], result["threshold_m"])
                run.counts, run.changed = result["counts"], result["changed"]
                run.status, run.progress, run.finished_at = TierRun.Status.DONE, 100, timezone.now()
                run.duration_ms = int((time.monotonic() - started) * 1000)
                run.save(update_fields=["threshold_r", "threshold_f", "threshold_m", "counts", "changed", "status",
                                        "progress", "finished_at", "duration_ms", "window_days", "method", "error"])
                if run.changed:
                    _emit_tier_changed(run.pk)
        except Exception as exc:
            _run_fail(run, f"{type(exc).__name__}: {exc}")
            raise
    logger.info("tier run done", extra={"run_id": run.pk, "changed": run.changed, "duration_ms": run.duration_ms,
                                        "written": result["written"]})
    return run


def tier_run_latest_full() -> TierRun | None:
    """The newest finished full run: the thresholds incremental runs reuse, the "to" of the transition matrix."""
    return (TierRun.objects.filter(status=TierRun.Status.DONE).exclude(requested_by__startswith=INCREMENTAL_REQUESTER)
            .select_related("scheme").order_by("-id").first())


def tier_run_incremental(*, customer_ids: list[int], as_of: date | None = None,
                         source: str = "trades") -> TierRun | None:
    """Reclassify just these customers (e.g. after new trades) against the latest full run's thresholds.

    ``as_of`` defaults to today (Asia/Shanghai) so today's trades count. Returns the run it
    recorded (requested_by ``incremental:<source>``), or None when there is nothing to do: no ids,
    no full run yet, or one in which nobody had traded (the next full run classifies everyone). Raises TierRunBusyError while a
    full run is in progress; the caller retries (the full run may not have seen the new trades).
    """
    ids = sorted({int(i) for i in customer_ids})
    base = tier_run_latest_full()
    if not ids or base is None or base.threshold_r is None:
        return None
    tier_scheme_validate(scheme=base.scheme)
    as_of = as_of or timezone.localdate()
    started = time.monotonic()
    with transaction.atomic():
        if not _try_lock("SELECT pg_try_advisory_xact_lock_shared(%s)", ADVISORY_LOCK_KEY):
            raise TierRunBusyError("全量分层计算正在进行，请稍后再试")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INCREMENTAL_LOCK_KEY])
        run = TierRun.objects.create(
            scheme=base.scheme, as_of=as_of, window_days=base.window_days, method=base.method,
            threshold_r=base.threshold_r, threshold_f=base.threshold_f, threshold_m=base.threshold_m,
            requested_by=f"{INCREMENTAL_REQUESTER}{source}"[:150])
        result = _run_statement(run=run, scheme_id=base.scheme_id, thresholds=_THRESHOLDS_SQL["given"],
                                customer_ids=ids, given=(base.threshold_r, base.threshold_f, base.threshold_m))
        run.counts, run.changed = result["counts"], result["changed"]
        run.status, run.progress, run.finished_at = TierRun.Status.DONE, 100, timezone.now()
        run.duration_ms = int((time.monotonic() - started) * 1000)
        run.save(update_fields=["counts", "changed", "status", "progress", "finished_at", "duration_ms"])
        if run.changed:
            _emit_tier_changed(run.pk)
    return run


def tier_run_start(*, actor, as_of: date | None = None) -> TierRun:
    """Queue a full run from the tiers page; the page polls the returned run's progress."""
    from tagging.tasks import tier_run as tier_run_task

    if getattr(actor, "role", None) not in TIER_RUN_ROLES:
        raise ApplicationError(TierError.RUN_NOT_ALLOWED, "无权发起分层计算", status_code=403)
    with transaction.atomic():
        scheme = TierScheme.objects.select_for_update().filter(active=True).first()  # serialises two clicks
        if scheme is None:
            raise ApplicationError(TierError.SCHEME_MISSING, "没有启用的分层方案")
        tier_scheme_validate(scheme=scheme)
        running = TierRun.objects.filter(status=TierRun.Status.RUNNING).exclude(
            requested_by__startswith=INCREMENTAL_REQUESTER)
        running.filter(started_at__lt=timezone.now() - STALE_RUN_AFTER).update(
            status=TierRun.Status.FAILED, error="超时：计算进程已退出", finished_at=timezone.now())
        if running.exists():
            raise TierRunBusyError()
        run = TierRun.objects.create(scheme=scheme, as_of=as_of or timezone.localdate(),
                                     window_days=scheme.window_days, method=scheme.method,
                                     requested_by=actor.username)
        audit_record(actor=actor, action="tier.run_start", target_type="tier_run", target_id=str(run.pk))
        transaction.on_commit(lambda: tier_run_task.delay(run_id=run.pk))
    return run


def tier_run_execute(*, run_id: int | None = None, as_of: str | None = None, give_up_when_busy: bool = False
                     ) -> TierRun | None:
    """What the Celery task does: run a queued run (quietly skipping one that is gone or finished),
    or, without ``run_id``, a scheduled full run for ``as_of`` (ISO date, default today)."""
    if run_id is None:
        return tier_run_compute(as_of=date.fromisoformat(as_of) if as_of else None, requested_by="schedule")
    run = TierRun.objects.select_related("scheme").filter(pk=run_id).first()
    if run is None or run.status != TierRun.Status.RUNNING:
        return run
    try:
        return tier_run_compute(run=run)
    except TierRunBusyError as exc:
        if give_up_when_busy:
            _run_fail(run, exc.message)
            return run
        TierRun.objects.filter(pk=run.pk).update(error="等待另一个分层计算结束…")
        raise
    except ApplicationError:
        return run  # marked FAILED with the reason, which the page shows


# --- strategies -----------------------------------------------------------------------------

def tier_definition_get_for_user(*, user, code: str) -> TierDefinition:
    """A tier of the active scheme whose strategy ``user`` may edit; 404 otherwise."""
    if getattr(user, "role", None) not in TIER_STRATEGY_ROLES:
        raise Http404("tier strategy not editable")
    definition = TierDefinition.objects.filter(scheme__active=True, code=code).select_related("scheme").first()
    if definition is None:
        raise Http404("tier not found")
    return definition


@transaction.atomic
def tier_strategy_update(*, actor, definition: TierDefinition, data: dict) -> TierDefinition:
    """Save a tier's service strategy; channels and cadence are required, no promise of returns anywhere."""
    values = {f: (data.get(f) or "").strip() for f in STRATEGY_FIELDS}
    errors = [{"field": f, "message": "请填写此项"} for f in ("channels", "cadence") if not values[f]]
    for f, value in values.items():
        found = [w for w in FORBIDDEN_PROMISES if w in value]
        if found:
            errors.append({"field": f, "message": f"不得含有承诺收益的用语：{'、'.join(found)}"})
        max_length = TierDefinition._meta.get_field(f).max_length
        if len(value) > max_length:
            errors.append({"field": f, "message": f"最多 {max_length} 个字"})
    if errors:
        raise ApplicationError(TierError.STRATEGY_INVALID, "服务策略有误", errors)
    before = {f: getattr(definition, f) for f in STRATEGY_FIELDS}
    for f, value in values.items():
        setattr(definition, f, value)
    definition.save(update_fields=list(STRATEGY_FIELDS))
    audit_record(actor=actor, action="tier.strategy_update", target_type="tier_definition",
                 target_id=f"{definition.scheme.code}:{definition.code}",
                 details={"before": before, "after": values})
    return definition


# --- selectors ------------------------------------------------------------------------------

def _definitions() -> list[TierDefinition]:
    return list(TierDefinition.objects.filter(scheme__active=True).order_by("rank", "code"))


def tier_definitions() -> dict[str, TierDefinition]:
    """Code → definition (label, colour, rank …) of the active scheme's tiers, best first, in one query:
    for labelling many clients' tiers at once."""
    return {d.code: d for d in _definitions()}


def _strategy(d: TierDefinition | None) -> dict:
    return {f: getattr(d, f, "") for f in STRATEGY_FIELDS}


def tier_overview(*, user) -> dict:
    """Customers and total assets per tier in ``user``'s scope, in the active scheme's order."""
    rows = (Customer.objects.visible_to(user).values("tier__code")
            .annotate(n=Count("id"), assets=Sum("total_assets")).order_by())
    by_code = {r["tier__code"]: r for r in rows}
    total = sum(r["n"] for r in rows)
    tiers = []
    for d in _definitions():
        r = by_code.pop(d.code, {"n": 0, "assets": Decimal(0)})
        tiers.append({"code": d.code, "label": d.label, "colour": d.colour, "rank": d.rank, "count": r["n"],
                      "assets": r["assets"] or Decimal(0), "definition": d, **_strategy(d)})
    uncomputed = by_code.pop(None, {"n": 0, "assets": Decimal(0)})
    for code, r in sorted(by_code.items()):  # codes of an older scheme still on some customers
        tiers.append({"code": code, "label": code, "colour": "secondary", "rank": 999, "count": r["n"],
                      "assets": r["assets"] or Decimal(0), "definition": None, **_strategy(None)})
    for t in tiers:
        t["share"] = round(100 * t["count"] / total, 1) if total else 0
    total_assets = sum((t["assets"] for t in tiers), uncomputed["assets"] or Decimal(0))
    return {"tiers": tiers, "total": total, "total_assets": total_assets,
            "uncomputed": {"count": uncomputed["n"], "assets": uncomputed["assets"] or Decimal(0)},
            "latest_run": tier_run_latest_full()}


_MATRIX_SQL = """
WITH span AS (
    SELECT DISTINCT ON (h.customer_id) h.customer_id, h.from_code
    FROM tagging_customertierhistory h
    WHERE h.run_id > %(previous)s AND h.run_id <= %(latest)s {scope_h}
    ORDER BY h.customer_id, h.id
),
later AS (
    SELECT DISTINCT ON (h.customer_id) h.customer_id, h.from_code
    FROM tagging_customertierhistory h
    WHERE h.run_id > %(latest)s {scope_h}
    ORDER BY h.customer_id, h.id
),
at_latest AS (
    SELECT ct.customer_id, coalesce(later.from_code, ct.code) AS code
    FROM tagging_customertier ct LEFT JOIN later USING (customer_id)
    WHERE true {scope_ct}
)
SELECT coalesce(span.from_code, a.code), a.code, count(*)
FROM at_latest a LEFT JOIN span USING (customer_id)
WHERE a.code <> ''
GROUP BY 1, 2
"""


def tier_transition_matrix(*, user) -> dict:
    """How the customers in ``user``'s scope moved between the previous and the latest full run.

    A customer's "from" is their tier right after the previous full run (before the first change
    since), "to" their tier right after the latest one; incremental runs in between count as
    movement, later ones do not. "" as "from" means not tiered before. With one run, "from" is
    everyone's tier before it.
    """
    runs = list(TierRun.objects.filter(status=TierRun.Status.DONE).exclude(
        requested_by__startswith=INCREMENTAL_REQUESTER).order_by("-id")[:2])
    empty = {"latest": None, "previous": None, "codes": [], "rows": [], "max": 0, "moved": 0, "total": 0}
    if not runs:
        return empty
    latest, previous = runs[0], (runs[1] if len(runs) > 1 else None)
    params = {"previous": previous.pk if previous else 0, "latest": latest.pk}
    scope_h = scope_ct = ""
    if not scope_for(user).everything:  # the customers the user may see, as the list would select them
        try:
            visible_sql, visible_params = Customer.objects.visible_to(user).values("id").query.sql_with_params()
        except EmptyResultSet:  # a scope with nobody in it
            return {**empty, "latest": latest, "previous": previous}
        params.update({f"v{i}": v for i, v in enumerate(visible_params)})
        visible_sql = visible_sql % tuple(f"%(v{i})s" for i in range(len(visible_params)))
        scope_h = f"AND h.customer_id IN ({visible_sql})"
        scope_ct = f"AND ct.customer_id IN ({visible_sql})"
    with connection.cursor() as cursor:
        cursor.execute(_MATRIX_SQL.format(scope_h=scope_h, scope_ct=scope_ct), params)
        cells = {(f, t): n for f, t, n in cursor.fetchall()}
    definitions = _definitions()
    labels = {d.code: d.label for d in definitions}
    order = [d.code for d in definitions]
    order += sorted({c for pair in cells for c in pair if c and c not in labels})
    from_codes = ([""] if any(f == "" for f, _ in cells) else []) + order
    rows = [{"code": f, "label": labels.get(f, f) if f else "未分层",
             "cells": [{"to": t, "n": cells.get((f, t), 0), "stay": f == t} for t in order],
             "total": sum(cells.get((f, t), 0) for t in order)} for f in from_codes]
    return {"latest": latest, "previous": previous,
            "codes": [{"code": c, "label": labels.get(c, c)} for c in order], "rows": rows,
            "max": max(cells.values(), default=0), "total": sum(cells.values()),
            "moved": sum(n for (f, t), n in cells.items() if f != t)}


def tier_run_history(*, user, limit: int = 10) -> list[TierRun]:
    """Newest runs first, each with ``changed_in_scope``: how many of its changes ``user`` may see."""
    runs = list(TierRun.objects.select_related("scheme").order_by("-id")[:limit])
    changed = dict(CustomerTierHistory.objects.visible_to(user).filter(run__in=runs).values("run_id")
                   .annotate(n=Count("id")).values_list("run_id", "n"))
    for run in runs:
        run.changed_in_scope = changed.get(run.pk, 0)
        run.is_incremental = run.requested_by.startswith(INCREMENTAL_REQUESTER)
    return runs


def tier_run_get_for_user(*, user, run_id: int) -> TierRun:
    """A run whose progress ``user`` may follow (those who may start runs); 404 otherwise."""
    if getattr(user, "role", None) not in TIER_RUN_ROLES:
        raise Http404("tier runs not visible")
    run = TierRun.objects.select_related("scheme").filter(pk=run_id).first()
    if run is None:
        raise Http404("tier run not found")
    return run


def tier_run_running() -> TierRun | None:
    return (TierRun.objects.filter(status=TierRun.Status.RUNNING, started_at__gte=timezone.now() - STALE_RUN_AFTER)
            .exclude(requested_by__startswith=INCREMENTAL_REQUESTER).order_by("-id").first())


def customer_tier(*, customer) -> dict | None:
    """The customer's current tier for the 360° page, with R/F/M and the tier's service strategy."""
    tier = CustomerTier.objects.filter(customer_id=customer.pk).first()
    if tier is None:
        return None
    d = TierDefinition.objects.filter(scheme__active=True, code=tier.code).first()
    return {"code": tier.code, "label": d.label if d else tier.code, "colour": d.colour if d else "secondary",
            "rank": d.rank if d else None, "r": tier.r, "f": tier.f, "m": tier.m, "as_of": tier.as_of,
            "changed_at": tier.changed_at, "run_id": tier.run_id, **_strategy(d)}


def customer_filter_by_tier(qs, filters: dict):
    """Customer-list filter: ``tier`` is one code or a list of codes; "none" means not tiered yet."""
    codes = filters.get("tier")
    if not codes:
        return qs
    codes = [c for c in (codes if isinstance(codes, list | tuple | set) else [codes]) if c]
    if not codes:
        return qs
    q = Q(tier__code__in=[c for c in codes if c != "none"])
    if "none" in codes:
        q |= Q(tier__isnull=True)
    return qs.filter(q)


def annotate_tier(qs):
    """Adds tier_code, tier_label and tier_colour (active scheme) to a Customer queryset, in the same query."""
    definition = TierDefinition.objects.filter(scheme__active=True, code=OuterRef("tier_code"))
    return qs.annotate(tier_code=F("tier__code")).annotate(
        tier_label=Subquery(definition.values("label")[:1]),
        tier_colour=Subquery(definition.values("colour")[:1]),
    )
