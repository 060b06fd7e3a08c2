"""Celery tasks for WeCom sync (thin)."""
