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
import random

import _common

_common.django_setup()

from _common import dataset_ensure, timed_ms  # noqa: E402

from core.models import User  # noqa: E402
from customers.models import BehaviourEvent, Customer, Trade  # noqa: E402
from customers.selectors import customer_list  # noqa: E402


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
        p50, p95, _result = timed_ms(fn, runs=args.runs)
        baseline = baseline or (p50, p95)
        print(f"{label:<40}{p50:9.2f}{p95:9.2f}{p50 / baseline[0]:9.1f}{p95 / baseline[1]:9.1f}", flush=True)


if __name__ == "__main__":
    main()
