"""Celery tasks for WeCom callbacks, contact ways and transfers (thin)."""

from celery import shared_task


@shared_task(name="wecom.callback_process", acks_late=True)
def callback_process_task(event_id: int, attempts: int | None = None) -> str | None:
    """Process one stored callback, claimed at ``attempts`` (a duplicate delivery finds it moved on)."""
    from integrations.wecom.callbacks import callback_process

    return callback_process(event_id, expected_attempts=attempts)


@shared_task(name="wecom.callbacks_process_pending", acks_late=True)
def callbacks_process_pending() -> int:
    """Every minute from beat: queue pending events whose task was lost and failed ones due a retry."""
    from integrations.wecom.callbacks import callbacks_due

    due = callbacks_due()
    for event_id, attempts in due:
        callback_process_task.delay(event_id, attempts)
    return len(due)


@shared_task(name="wecom.transfer_results_poll", acks_late=True)
def transfer_results_poll() -> int:
    """Every 10 minutes from beat: submit transfer items still pending and ask WeCom how waiting ones ended."""
    from integrations.wecom.transfers import transfers_poll

    return transfers_poll()
