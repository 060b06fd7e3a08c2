"""Celery tasks (thin; logic lives in the modules they call): the analyses' summary tables."""

from celery import shared_task


@shared_task(name="dashboards.analyses_refresh", acks_late=True, soft_time_limit=1800, time_limit=1900)
def analyses_refresh_task(full: bool = False) -> dict | None:
    """Incremental (or, with ``full``, complete) refresh of the analyses' summary tables; safe to run twice."""
    from dashboards.analyses.refresh import analyses_refresh

    run = analyses_refresh(full=full)
    if run is None:
        return None
    return {"id": run.pk, "mode": run.mode, "customers": run.customers_changed, "cells": run.cells_rewritten,
            "ms": run.duration_ms}
