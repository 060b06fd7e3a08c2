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


@shared_task(name="groups.demo_seed", acks_late=True)
def demo_seed() -> dict:
    """The demo only (`make run`), after its first WeCom sync: purposes, audiences and health history."""
    from groups.demo import seed_groups_demo

    return seed_groups_demo()
