"""Bench: the 我的客户 list (``customers.selectors.customer_list``) at scale, against a primary-key lookup.

    .venv/bin/python bench/customers_list.py [--customers 1000000] [--runs 50] [--seed 42]

Runs on its own embedded PostgreSQL under ``.data/bench`` (SCRM_DATA_DIR, set before Django
starts) and seeds it with ``seed_demo`` when it holds fewer customers than asked; that takes
about ten minutes for a million and is kept for the next run. Prints p50/p95 per scenario and
the ratio to a primary-key lookup measured in the same run, so numbers from machines of
different speed can be compared.
"""

import argparse
import inspect
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DATA_DIR", str(ROOT / ".data" / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from core.models import User  # noqa: E402
from customers.demo_data import seed_demo  # noqa: E402
from customers.models import BehaviourEvent, Customer, Trade  # noqa: E402
from customers.selectors import customer_list  # noqa: E402


def dataset_ensure(*, customers: int, seed: int) -> None:
    """Seed the bench database unless it already holds at least ``customers`` customers."""
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


def timed(fn, *, runs: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds over ``runs`` calls, after three warm-up calls."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def list_call(user, filters: dict, *, sort: str | None = None, page: int = 1):
    """A list page as the view asks for it: the first page with its total, later pages by cursor."""
    accepts = inspect.signature(customer_list).parameters
    extra = {"sort": sort} if sort and "sort" in accepts else {}

    def call():
        result = customer_list(user=user, filters=filters, limit=50, **extra)
        for _ in range(page - 1):
            kwargs = {"with_total": False} if "with_total" in accepts else {}
            result = customer_list(user=user, filters=filters, limit=50, after=result.next_cursor, **extra, **kwargs)
        return result

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    dataset_ensure(customers=args.customers, seed=args.seed)

    advisor = User.objects.get(username="advisor_bj")
    manager = User.objects.get(username="manager_bj")
    hq = User.objects.get(username="hq")
    ids = list(Customer.objects.order_by("?").values_list("id", flat=True)[:1000])
    rng = random.Random(args.seed)

    def pk_lookup():
        return Customer.objects.get(pk=rng.choice(ids))

    scenarios = [
        ("PK lookup (baseline)", pk_lookup),
        ("advisor: my clients, by assets", list_call(advisor, {})),
        ("advisor: page 3 by cursor", list_call(advisor, {}, page=3)),
        ("advisor: funded, no contact 30d", list_call(advisor, {"funnel_stage": ["funded"], "no_contact_days": 30},
                                                      sort="last_contact")),
        ("advisor: C4/C5, risk test expired", list_call(advisor, {"risk_level": ["C4", "C5"], "risk_expired": "1"})),
        ("branch mgr: whole branch, by assets", list_call(manager, {})),
        ("branch mgr: retain/revenue, C3+", list_call(manager, {"lifecycle_stage": ["retain", "revenue"],
                                                                 "risk_level": ["C3", "C4", "C5"]})),
        ("branch mgr: name starts with 王", list_call(manager, {"q": "王"}, sort="name")),
        ("HQ: everyone, by assets", list_call(hq, {})),
        ("HQ: opened not funded, newest", list_call(hq, {"funnel_stage": ["opened"]}, sort="opened")),
        ("HQ: one branch, no contact 90d", list_call(hq, {"branch": "SZ01", "no_contact_days": 90},
                                                     sort="last_contact")),
    ]
    print(f"\ncustomers {Customer.objects.count():,} · trades {Trade.objects.count():,} · "
          f"events {BehaviourEvent.objects.count():,} · advisor_bj sees {Customer.objects.visible_to(advisor).count():,}"
          f" · manager_bj sees {Customer.objects.visible_to(manager).count():,} · {args.runs} runs each\n")
    print(f"{'scenario':<40}{'p50 ms':>9}{'p95 ms':>9}{'p50 ×PK':>9}{'p95 ×PK':>9}")
    baseline = None
    for label, fn in scenarios:
        p50, p95 = timed(fn, runs=args.runs)
        baseline = baseline or (p50, p95)
        print(f"{label:<40}{p50:9.2f}{p95:9.2f}{p50 / baseline[0]:9.1f}{p95 / baseline[1]:9.1f}", flush=True)


if __name__ == "__main__":
    main()
