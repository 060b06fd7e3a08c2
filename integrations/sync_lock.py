"""One sync at a time, per kind of sync (CRM pull, WeCom): a PostgreSQL session advisory lock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


@contextmanager
def sync_lock(key: int, label: str) -> Iterator[bool]:
    """``with sync_lock(KEY, "crm sync") as got:`` — ``got`` False (at once) when another session holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except DatabaseError:  # the connection is gone, and its session lock with it
                logger.warning("%s lock was not released explicitly", label, exc_info=True)
