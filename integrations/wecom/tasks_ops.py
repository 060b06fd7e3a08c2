"""Celery tasks for WeCom callbacks, contact ways and transfers (thin)."""
