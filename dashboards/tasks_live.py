"""Celery tasks (thin; logic lives in the modules they call)."""

from celery import shared_task

__all__ = ["live_reconcile"]


@shared_task(name="dashboards.live_reconcile", acks_late=True, ignore_result=True)
def live_reconcile() -> int:
    """Rewrite today's live counters of every scope from the database (beat, every few minutes) and rewarm the
    firm's and branches' tier/opportunity tiles; just after midnight also yesterday's counters, so its last
    minutes are final; and a few of the last 30 days missing from Redis (after it was emptied), so the 7/30-day
    ranges read cached days."""
    from datetime import timedelta

    from django.utils import timezone

    from dashboards.live import current_state_warm, past_days_warm, reconcile_day, today

    written = reconcile_day()
    current_state_warm()
    if timezone.localtime().hour == 0 and timezone.localtime().minute < 10:
        reconcile_day(day=today() - timedelta(days=1))
    past_days_warm()
    return written
