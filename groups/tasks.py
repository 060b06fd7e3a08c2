"""Celery tasks of the groups app: thin wrappers around services."""

from datetime import date, timedelta

from celery import shared_task
from django.utils import timezone

from groups.services import group_stats_record


@shared_task(name="groups.daily_stats", acks_late=True)
def daily_stats(day: str | None = None) -> int:
    """Nightly (00:10): record every group's health for the day that just ended (or ``day``, ISO)."""
    target = date.fromisoformat(day) if day else timezone.localdate() - timedelta(days=1)
    return group_stats_record(target)
