"""Celery tasks (thin; logic lives in the modules they call)."""
