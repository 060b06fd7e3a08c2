"""Liveness of the parts the product needs: database, cache/broker (Redis) and a Celery worker.

``/healthz`` answers within ``DEADLINE`` seconds whatever happens: the checks run side by side in daemon threads,
each on a fresh connection with short timeouts, and a check that has not answered by the deadline is reported as
"timeout" (a paused PostgreSQL, a Redis that accepts connections but never answers)."""

import threading
import time
from queue import Empty, Queue

from django.core.cache import cache
from django.db import connections

from scrm.celery import app as celery_app

DEADLINE = 1.5  # seconds for all checks together


def check_database() -> tuple[bool, str]:
    connection = connections.create_connection("default")  # not the request's: it may be the one that hangs
    try:
        with connection.cursor() as cur:
            # SET LOCAL in a transaction of its own: with the connection pool this may be a pooled connection, and
            # a plain SET would leave the 1 s limit on it for the requests that borrow it next
            cur.execute("BEGIN")
            cur.execute("SET LOCAL statement_timeout = 1000")
            cur.execute("SELECT 1")
            cur.execute("ROLLBACK")
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        return False, type(exc).__name__
    finally:
        connection.close()


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


def _run_with_deadline(checks: dict, deadline: float) -> dict:
    answers: Queue = Queue()
    for name, check in checks.items():
        threading.Thread(target=lambda n=name, c=check: answers.put((n, c())), daemon=True,
                         name=f"healthz-{name}").start()
    results, end = {}, time.monotonic() + deadline
    while len(results) < len(checks):
        try:
            name, result = answers.get(timeout=max(0.0, end - time.monotonic()))
        except Empty:
            break
        results[name] = result
    return {name: results.get(name, (False, "timeout")) for name in checks}


def health_report() -> tuple[bool, dict]:
    from scrm.supervision import supervision_report

    parts = _run_with_deadline({"database": check_database, "cache": check_cache,
                                "worker": lambda: check_worker(timeout=0.8)}, DEADLINE)
    healthy = all(ok for ok, _ in parts.values())
    report = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in parts.items()}
    supervised = supervision_report()
    if supervised is not None:
        report["supervision"] = supervised
    return healthy, report
