"""Celery tasks of the integrations app: load by id, call a service, nothing else."""

from celery import shared_task

from integrations import webhooks

CRM_SYNC_SOFT_TIME_LIMIT = 30 * 60


@shared_task(name="integrations.webhook_deliver", bind=True, acks_late=True)
def webhook_deliver(self, delivery_id: int, attempts: int | None = None) -> str | None:
    """One attempt at one delivery, claimed at ``attempts``. No Celery retries: a failed attempt is
    rescheduled in the row (``next_attempt_at``) and claimed again by ``webhook_dispatch_due``; a
    delivery that is gone, finished or already past this attempt is skipped quietly."""
    delivery = webhooks.webhook_delivery_attempt(delivery_id=delivery_id, expected_attempts=attempts)
    return delivery.status if delivery else None


@shared_task(name="integrations.webhook_dispatch_due", bind=True, acks_late=True)
def webhook_dispatch_due(self) -> int:
    """Every 30 s from beat: claim due deliveries (SKIP LOCKED) and queue them."""
    return webhooks.webhook_dispatch_due()


@shared_task(name="integrations.crm_sync", bind=True, acks_late=True,
             soft_time_limit=CRM_SYNC_SOFT_TIME_LIMIT, time_limit=CRM_SYNC_SOFT_TIME_LIMIT + 60)
def crm_sync(self, triggered_by: str = "beat") -> int | None:
    """Pull products, customers and trades changed in the CRM. A run already in progress makes this a
    no-op (see crm_sync_run); a failed run resumes from its saved page cursor next time."""
    from integrations.crm.sync import crm_sync_run

    run = crm_sync_run(triggered_by=triggered_by)
    return run.pk if run else None
