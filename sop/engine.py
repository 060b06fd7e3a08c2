"""The SOP engine: enroll, claim due steps, execute them exactly once.

* Enrollment is set-based (``INSERT … SELECT … ON CONFLICT DO NOTHING``): a trigger seen twice
  enrolls once (unique journey/customer/trigger key), a client is in a journey at most once at a
  time, hold-out clients are marked and get no steps.
* ``claim_due`` (beat, every few seconds) moves due step runs to ``claimed`` with
  ``SELECT … FOR UPDATE SKIP LOCKED`` in batches and hands the ids to workers; step runs whose claim
  is older than SOP_CLAIM_TIMEOUT (a worker died, a message was lost) are claimed again. No ETAs.
* ``execute_batch`` locks its claimed rows (SKIP LOCKED again, so a duplicated task finds nothing),
  runs each step through sop/steps.py and, in the same transaction, marks it done and creates the
  next step run. The idempotency key (enrollment:version:step) is unique, and providers dedupe on
  it, so a retry after a crash never produces a second touch.
"""

import hashlib
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.events import StepRunsFinished, emit
from sop.models import Enrollment, Journey, JourneyVersion, StepRun

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


def idempotency_key(enrollment_id: int, version_id: int, step_id: str) -> str:
    return f"{enrollment_id}:{version_id}:{step_id}"


def _steps(version: JourneyVersion) -> dict[str, dict]:
    return {s["id"]: s for s in version.definition["steps"]}


def in_holdout(journey_id: int, customer_id: int, percent: int) -> bool:
    """Deterministic: the same client is always in or out of a journey's control group."""
    if not percent:
        return False
    digest = hashlib.sha256(f"holdout:{journey_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


# --- enrollment ----------------------------------------------------------------------------

def enroll_queryset(*, version: JourneyVersion, customers, trigger_key: str, now=None) -> int:
    """Enroll every customer of ``customers`` (a Customer queryset) in ``version``'s journey; returns how
    many entered (hold-out included). Two statements whatever the size."""
    from segments.rules import rule_compile

    now = now or timezone.now()
    journey = version.journey
    if journey.status != Journey.Status.LIVE or journey.live_version_id != version.pk:
        raise ApplicationError("journey_not_live", "旅程未在运行，不能加入客户")
    definition = version.definition
    if definition.get("entry_rule"):
        customers = customers.filter(rule_compile(definition["entry_rule"], now=now))
    percent = int(definition.get("holdout_percent") or 0)
    ids_sql, ids_params = customers.order_by().values("pk").query.sql_with_params()
    start = definition["start"]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH candidates(id) AS ({ids_sql}),
            entered AS (
                INSERT INTO sop_enrollment (journey_id, version_id, customer_id, status, trigger_key, variant, entered_at)
                SELECT %s, %s, c.id,
                       CASE WHEN (('x' || substr(encode(sha256(('holdout:' || %s || ':' || c.id)::bytea), 'hex'), 1, 8))
                                  ::bit(32)::bigint %% 100) < %s THEN 'holdout' ELSE 'active' END,
                       %s, '', %s
                FROM candidates c
                WHERE NOT EXISTS (  -- scans repeat every minute: skip who is in it or saw this trigger, cheaply
                    SELECT 1 FROM sop_enrollment seen
                    WHERE seen.journey_id = %s AND seen.customer_id = c.id
                      AND (seen.trigger_key = %s OR seen.status = 'active'))
                ON CONFLICT DO NOTHING  -- and a concurrent enrollment of the same client loses the race quietly
                RETURNING id, status
            ),
            steps AS (
                INSERT INTO sop_steprun (enrollment_id, step_id, step_type, idempotency_key, status, due_at, attempts,
                                         outcome, block_reason, detail, error, created_at)
                SELECT e.id, %s, %s, e.id || ':' || %s || ':' || %s, 'due', %s, 0, '', '', '{{}}'::jsonb, '', %s
                FROM entered e WHERE e.status = 'active'
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM entered), (SELECT count(*) FROM steps)
            """,
            [*ids_params, journey.pk, version.pk, str(journey.pk), percent, trigger_key, now, journey.pk, trigger_key,
             start, _steps(version)[start]["type"], str(version.pk), start, now, now],
        )
        entered, _started = cursor.fetchone()
    return entered


def enroll_customer(*, journey: Journey, customer_id: int, trigger_key: str, now=None) -> bool:
    """One client, from an event hook; False when they are already in it or the trigger was seen."""
    from customers.models import Customer

    if journey.status != Journey.Status.LIVE or journey.live_version is None:
        return False
    return enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=customer_id),
                           trigger_key=trigger_key, now=now) > 0


# --- claiming ------------------------------------------------------------------------------

def claim_due(*, limit: int = 5000, batch_size: int = 200, now=None) -> list[list[int]]:
    """Claim due step runs (and stale claims) and return them in batches for workers."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.SOP_CLAIM_TIMEOUT)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE sop_steprun SET status = 'claimed', claimed_at = %s
            WHERE id IN (
                SELECT s.id FROM sop_steprun s
                JOIN sop_enrollment e ON e.id = s.enrollment_id
                JOIN sop_journey j ON j.id = e.journey_id
                WHERE ((s.status IN ('due', 'failed') AND s.due_at <= %s) OR (s.status = 'claimed' AND s.claimed_at < %s))
                  AND j.status = 'live'
                ORDER BY s.due_at
                LIMIT %s
                FOR UPDATE OF s SKIP LOCKED
            )
            RETURNING id
            """,
            [now, now, stale, limit],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]


# --- execution -----------------------------------------------------------------------------

def execute_batch(step_run_ids: list[int], *, now=None) -> dict:
    """Run claimed step runs; a step run someone else holds or already finished is skipped."""
    from sop import steps

    now = now or timezone.now()
    with transaction.atomic():
        runs = list(
            StepRun.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=step_run_ids, status=StepRun.Status.CLAIMED)
            .select_related("enrollment__version", "enrollment__journey", "enrollment__customer__advisor",
                            "enrollment__customer__branch", "enrollment__customer__tier")
            .order_by("pk")
        )
        if not runs:
            return {"executed": 0}
        by_type: dict[str, list[StepRun]] = {}
        for run in runs:
            by_type.setdefault(run.step_type, []).append(run)
        results: dict[int, steps.StepResult] = {}
        for step_type, group in by_type.items():
            results.update(steps.run_steps(step_type, group, now=now))
        _finish(runs, results, now)
    return {"executed": len(runs)}


def _step_runs_write(runs: list[StepRun]) -> None:
    """One ``UPDATE … FROM (VALUES …)`` for the batch (Django's bulk_update builds a CASE per field and row,
    which took most of the dispatcher's time)."""
    if not runs:
        return
    row = "(%s::bigint, %s, %s::timestamptz, %s::int, %s, %s, %s::jsonb, %s, %s::timestamptz, %s::bigint)"
    params = []
    for r in runs:
        params += [r.pk, r.status, r.due_at, r.attempts, r.outcome, r.block_reason, json.dumps(r.detail, cls=DjangoJSONEncoder),
                   r.error, r.finished_at, r.touch_id]
    with connection.cursor() as cursor:
        cursor.execute(f"""
            UPDATE sop_steprun s SET status = v.status, due_at = v.due_at, attempts = v.attempts, outcome = v.outcome,
                   block_reason = v.block_reason, detail = v.detail, error = v.error, finished_at = v.finished_at,
                   touch_id = v.touch_id
            FROM (VALUES {", ".join([row] * len(runs))})
                 AS v(id, status, due_at, attempts, outcome, block_reason, detail, error, finished_at, touch_id)
            WHERE s.id = v.id
        """, params)


def _finish(runs: list[StepRun], results: dict, now) -> None:
    """Write every run's outcome and create the next step runs (one bulk statement each)."""
    next_runs, finished_enrollments, updated = [], [], []
    step_maps: dict[int, dict] = {}
    for run in runs:
        result = results[run.pk]
        run.detail = {**run.detail, **result.detail}
        if result.retry:
            run.attempts += 1
            run.error = result.error
            if run.attempts >= MAX_ATTEMPTS:
                run.status, run.finished_at = StepRun.Status.DEAD, now
            else:
                run.status = StepRun.Status.FAILED
                run.due_at = now + timedelta(seconds=30 * 2 ** (run.attempts - 1))
            updated.append(run)
            continue
        if result.defer_until is not None:
            run.status, run.due_at, run.outcome, run.error = StepRun.Status.DUE, result.defer_until, result.outcome, ""
            updated.append(run)
            continue
        if result.dead:  # refused for good (e.g. the provider rejected the number): a dead letter, the journey goes on
            run.status = StepRun.Status.DEAD
        else:
            run.status = StepRun.Status.BLOCKED if result.block_reason else StepRun.Status.DONE
        run.outcome, run.block_reason, run.error, run.finished_at = result.outcome, result.block_reason, result.error, now
        run.touch_id = result.touch_id or run.touch_id
        updated.append(run)
        version = run.enrollment.version
        step_map = step_maps.get(version.pk) or step_maps.setdefault(version.pk, _steps(version))
        nxt = result.next_step if result.next_step is not None else step_map[run.step_id].get("next")
        if nxt:
            enrollment = run.enrollment
            next_runs.append(StepRun(
                enrollment=enrollment, step_id=nxt, step_type=step_map[nxt]["type"],
                idempotency_key=idempotency_key(enrollment.pk, enrollment.version_id, nxt),
                due_at=result.next_due_at or now))
        else:
            finished_enrollments.append(run.enrollment_id)
    _step_runs_write(updated)
    finished = [r.pk for r in updated if r.finished_at == now]
    if finished:
        emit(StepRunsFinished(step_run_ids=tuple(finished)))
    if next_runs:
        StepRun.objects.bulk_create(next_runs, ignore_conflicts=True)  # idempotency key: a retry adds nothing
    if finished_enrollments:
        Enrollment.objects.filter(pk__in=finished_enrollments, status=Enrollment.Status.ACTIVE).update(
            status=Enrollment.Status.COMPLETED, finished_at=now)
