"""Liveness of the parts the product needs: database, cache/broker (Redis) and a Celery worker."""

from django.core.cache import cache
from django.db import connection

from scrm.celery import app as celery_app


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        return False, type(exc).__name__


def check_cache() -> tuple[bool, str]:
    try:
        cache.set("healthz", "1", 10)
        return (cache.get("healthz") == "1"), "ok"
    except Exception as exc:  # noqa: BLE001
        return False, type(exc).__name__


def check_worker(timeout: float = 1.0) -> tuple[bool, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            replies = celery_app.control.ping(timeout=timeout, connection=conn)
        return (bool(replies), f"{len(replies)} worker(s)" if replies else "no worker answered")
    except Exception as exc:  # noqa: BLE001
        return False, type(exc).__name__


def health_report() -> tuple[bool, dict]:
    parts = {"database": check_database(), "cache": check_cache()}
    parts["worker"] = check_worker() if parts["cache"][0] else (False, "broker down")
    healthy = all(ok for ok, _ in parts.values())
    return healthy, {name: {"ok": ok, "detail": detail} for name, (ok, detail) in parts.items()}
