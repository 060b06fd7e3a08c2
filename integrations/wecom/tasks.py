"""Celery tasks of the WeCom app, found by Celery's autodiscovery through this module."""

from integrations.wecom import tasks_ops, tasks_sync

__all__ = ["tasks_ops", "tasks_sync"]
