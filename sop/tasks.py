"""Celery tasks of the SOP engine: thin wrappers, JSON arguments, acks_late everywhere.

A worker killed mid-batch loses nothing: its message is redelivered (acks_late, reject on worker
loss), and even if it is not, the claimed step runs are claimed again after SOP_CLAIM_TIMEOUT.
"""

from celery import shared_task
from django.db import transaction

from sop import calendar, engine, triggers


@shared_task(name="sop.tick", acks_late=True, ignore_result=True)
def tick() -> int:
    """Claim due steps and hand them to workers in batches, after the claim commits."""
    batches = engine.claim_due()
    for batch in batches:
        transaction.on_commit(lambda batch=batch: execute_batch.delay(batch))
    return sum(len(b) for b in batches)


@shared_task(name="sop.execute_batch", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             max_retries=5, default_retry_delay=10)
def execute_batch(self, step_run_ids: list[int]) -> dict:
    return engine.execute_batch(step_run_ids)


@shared_task(name="sop.triggers_scan", acks_late=True, ignore_result=True)
def triggers_scan() -> dict:
    return {str(k): v for k, v in triggers.triggers_scan().items()}


@shared_task(name="sop.calendar_check", acks_late=True, ignore_result=True)
def calendar_check() -> dict:
    return {k: str(v) for k, v in calendar.calendar_check().items()}


@shared_task(name="sop.noop", acks_late=True)
def noop() -> None:
    """Does nothing: bench/sop_dispatch.py's baseline for what a Celery task costs on the same workers."""


@shared_task(name="sop.goals_measure", acks_late=True, ignore_result=True)
def goals_measure() -> dict:
    """Every 5 minutes: record the journeys' newly met goals (sop/goals.py)."""
    from sop.goals import goals_measure as measure

    return measure()


@shared_task(name="sop.demo_seed", acks_late=True)
def demo_seed() -> dict:
    """The demo only (`make run`, after the WeCom sync and the groups demo): the three demo journeys."""
    from sop.demo import sop_demo_seed

    return sop_demo_seed()


@shared_task(name="sop.delivery_reports", acks_late=True, ignore_result=True)
def delivery_reports() -> dict:
    """Every minute: the provider's delivery reports → touch statuses (sop/delivery.py)."""
    from sop.delivery import delivery_reports_pull

    return delivery_reports_pull()
