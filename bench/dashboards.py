"""Bench: render time of every dashboard page (live dashboard, analyses, people analyses) over the Django test
client as an HQ manager and as a branch manager, and — for the funnel and cohort analyses — the naive query on
the raw tables in the same run, with the ratio.

    SCRM_DATA_DIR=.data/bench .venv/bin/python bench/dashboards.py                        # 1,000,000 customers
    SCRM_DATA_DIR=.data/bench-small .venv/bin/python bench/dashboards.py --customers 20000 --runs 10

An empty database is first filled with customers.demo_data.seed_demo (≈20 trades and ≈50 events per customer)
and kept for later runs (bench/_common.py). The analyses' summary tables are then brought up to date with
dashboards.analyses.refresh.analyses_refresh (a full build the first time — its duration is printed — then an
incremental refresh, timed too, which is what Celery beat runs every 5 minutes).

Pages are every URL name under the ``dashboards`` namespace that exists at run time and answers GET without
arguments in its path (the SSE stream is skipped); each is fetched --runs times per user after a warm-up, and
p50/p95 are printed against the aim of 1 s. The naive baselines answer the same question as the funnel and the
cohort page (default period: the last 12 months) straight from customers_customer / customers_trade.
"""

import argparse
import time

import _common

_common.django_setup()

from _common import timed_ms  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import URLPattern, URLResolver, get_resolver, reverse  # noqa: E402

from core.models import Role, User  # noqa: E402
from customers.models import FUNNEL_ORDER, BehaviourEvent, Customer, Trade  # noqa: E402
from dashboards.analyses.common import current_month, month_add  # noqa: E402
from dashboards.analyses.refresh import analyses_last_refresh, analyses_refresh  # noqa: E402

AIM_MS = 1000
SKIP = ("stream", "sse", "events")  # server-sent events never finish


def dashboard_urls() -> list[tuple[str, str]]:
    """(name, path) of every GET page under the dashboards namespace without a path argument."""
    found = []

    def walk(resolver, namespace=""):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                walk(entry, f"{namespace}{entry.namespace}:" if entry.namespace else namespace)
            elif isinstance(entry, URLPattern) and entry.name and namespace == "dashboards:":
                if not entry.pattern.converters and not any(s in entry.name for s in SKIP):
                    found.append(f"dashboards:{entry.name}")

    walk(get_resolver())
    return [(name, reverse(name)) for name in found]


def naive_funnel(*, branch_id: int | None) -> list:
    """The funnel page's numbers (steps, and steps per channel) from customers_customer itself."""
    start = month_add(current_month(), -11)
    branch = "AND branch_id = %s" if branch_id else ""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT channel, count(*), count(*) FILTER (WHERE s >= 1), count(*) FILTER (WHERE s >= 2),
                   count(*) FILTER (WHERE s >= 3), count(*) FILTER (WHERE s >= 4)
            FROM (SELECT channel, array_position(%s::text[], funnel_stage::text) - 1 AS s FROM customers_customer
                  WHERE created_at >= (%s::timestamp AT TIME ZONE 'Asia/Shanghai') {branch}) c
            GROUP BY ROLLUP (channel)
        """, [FUNNEL_ORDER, start, *([branch_id] if branch_id else [])])
        return cursor.fetchall()


def naive_cohorts(*, branch_id: int | None) -> list:
    """The cohort page's numbers (cohort sizes, and clients trading N months after opening) from the raw tables."""
    start = month_add(current_month(), -11)
    branch = "AND c.branch_id = %s" if branch_id else ""
    args = [start, *([branch_id] if branch_id else [])]
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT date_trunc('month', c.opened_at) AS m, count(*) FROM customers_customer c
            WHERE c.opened_at >= %s {branch} GROUP BY 1
        """, args)
        sizes = cursor.fetchall()
        cursor.execute(f"""
            SELECT m, n, count(DISTINCT customer_id) FROM (
                SELECT date_trunc('month', c.opened_at) AS m, t.customer_id,
                       (extract(year from t.traded_at AT TIME ZONE 'Asia/Shanghai') * 12
                        + extract(month from t.traded_at AT TIME ZONE 'Asia/Shanghai'))::int
                       - (extract(year from c.opened_at) * 12 + extract(month from c.opened_at))::int AS n
                FROM customers_customer c JOIN customers_trade t ON t.customer_id = c.id
                WHERE c.opened_at >= %s {branch}) x
            WHERE n >= 0 GROUP BY 1, 2
        """, args)
        return sizes + cursor.fetchall()


def summaries_ensure() -> None:
    if analyses_last_refresh() is None:
        print("Building the analyses' summary tables (first, full build) …", flush=True)
    started = time.perf_counter()
    run = analyses_refresh()
    print(f"analyses refresh ({run.mode}): {run.customers_changed:,} customers, {run.cells_rewritten:,} cells, "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    run = analyses_refresh()
    print(f"analyses refresh again ({run.mode}, nothing changed): {time.perf_counter() - started:.2f} s", flush=True)
    from dashboards.churn import churn_backtest, churn_backtest_compute, churn_scores_compute
    from dashboards.models import ChurnScore

    if not ChurnScore.objects.exists():
        started = time.perf_counter()
        result = churn_scores_compute()
        print(f"churn scores (nightly job, first run): {result} in {time.perf_counter() - started:.1f} s", flush=True)
    if churn_backtest() is None:
        started = time.perf_counter()
        churn_backtest_compute()
        print(f"churn backtest (nightly job): {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed requests of each page per user")
    parser.add_argument("--baseline-runs", type=int, default=3, help="timed runs of each naive query")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    _common.dataset_ensure(customers=args.customers, seed=args.seed)
    summaries_ensure()
    setup_test_environment()
    hq = User.objects.filter(role=Role.HQ_MANAGER, is_active=True).order_by("pk").first()
    manager = (User.objects.filter(role=Role.BRANCH_MANAGER, is_active=True, branch__code="BJ01").first()
               or User.objects.filter(role=Role.BRANCH_MANAGER, is_active=True).order_by("pk").first())
    print(f"\ncustomers {Customer.objects.count():,} · trades {Trade.objects.count():,} · "
          f"events {BehaviourEvent.objects.count():,} · HQ: {hq.username} · branch manager: {manager.username} "
          f"({manager.branch.code}) · {args.runs} runs\n")
    header = f"{'page':<44}{'user':<16}{'status':>7}{'p50 ms':>9}{'p95 ms':>9}{'aim':>8}  result"
    print(header)
    print("-" * len(header))
    p50s, passed, timed, pages = {}, 0, 0, dashboard_urls()
    for name, path in pages:
        for label, user in (("HQ", hq), ("branch manager", manager)):
            client = Client()
            client.force_login(user)
            status = client.get(path).status_code
            if status == 405:
                break  # a POST-only action, not a page
            p50, p95, response = timed_ms(lambda client=client, path=path: client.get(path), runs=args.runs, warmup=1)
            if status == 200:
                p50s[(name, label)] = p50
            verdict = "PASS" if p95 < AIM_MS and status == 200 else "MISS" if status == 200 else f"HTTP {status}"
            passed, timed = passed + (verdict == "PASS"), timed + 1
            print(f"{name:<44}{label:<16}{status:>7}{p50:>9.1f}{p95:>9.1f}{'<' + str(AIM_MS):>8}  {verdict}", flush=True)

    print(f"\nnaive queries on the raw tables (last 12 months, the pages' default period), {args.baseline_runs} runs:")
    header = f"{'question':<44}{'user':<16}{'naive p50 ms':>14}{'page p50 ms':>13}{'×faster':>9}"
    print(header)
    print("-" * len(header))
    for question, fn, page in (("funnel: steps by channel", naive_funnel, "dashboards:analyses_funnel"),
                               ("cohorts: traded N months after opening", naive_cohorts, "dashboards:analyses_cohorts")):
        for label in ("HQ", "branch manager"):
            branch_id = None if label == "HQ" else manager.branch_id
            base50, _b95, _ = timed_ms(lambda fn=fn, branch_id=branch_id: fn(branch_id=branch_id),
                                       runs=args.baseline_runs, warmup=0)
            page50 = p50s.get((page, label))
            ratio = f"{base50 / page50:>8.1f}×" if page50 else f"{'—':>9}"
            print(f"{question:<44}{label:<16}{base50:>14.1f}{(page50 or 0):>13.1f}{ratio}", flush=True)
    print(f"\n{passed}/{timed} page renders answered 200 within {AIM_MS} ms at p95 "
          f"({len(pages)} dashboard URL names without path arguments found).")


if __name__ == "__main__":
    main()
