"""What the bench scripts share: Django on the bench's own embedded PostgreSQL, the seeded data set, COPY out
into pandas, and p50/p95 timing. A script starts with::

    import _common

    _common.django_setup()          # before any import of Django models

(run as ``python bench/<script>.py``, the bench directory is on ``sys.path``).
"""

import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(data_dir: str = "bench") -> None:
    """Django on ``.data/<data_dir>`` unless SCRM_DATA_DIR (or DATABASE_URL) says otherwise."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("SCRM_DATA_DIR", str(ROOT / ".data" / data_dir))
    os.environ.setdefault("SCRM_EMBEDDED_START", "1")  # the bench owns its own embedded servers
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    import django

    django.setup()


def dataset_ensure(*, customers: int, seed: int) -> None:
    """Migrate, then seed with ``seed_demo`` unless the database already holds at least ``customers`` customers
    (an embedded bench database holding fewer is emptied first; one given by DATABASE_URL never is)."""
    from django.core.management import call_command
    from django.db import connection

    from customers.demo_data import seed_demo
    from customers.models import Customer

    call_command("migrate", verbosity=0, skip_checks=True)
    have = Customer.objects.count()
    if have >= customers:
        return
    if have:
        if os.environ.get("DATABASE_URL"):
            sys.exit(f"The database at DATABASE_URL holds {have:,} customers (< {customers:,}); "
                     "empty it yourself or point the bench at its own embedded database.")
        print(f"The bench database holds {have:,} customers (< {customers:,}): emptying it to reseed.")
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE customers_customer CASCADE")
    print(f"Seeding {customers:,} customers (kept in {os.environ['SCRM_DATA_DIR']} for later runs) …", flush=True)
    seed_demo(customers=customers, seed=seed, stdout=sys.stdout)


def copy_out(sql: str, params: list) -> io.StringIO:
    """COPY a query's rows out as CSV (the fastest way an analyst gets rows into pandas)."""
    from django.db import connection

    from core.db import copy_out as db_copy_out

    with connection.cursor() as cursor:
        return db_copy_out(cursor, query=sql, params=params)


def timed_ms(fn, *, runs: int, warmup: int = 3) -> tuple[float, float, object]:
    """(p50, p95) in milliseconds over ``runs`` calls after ``warmup`` untimed ones, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))], result
