"""RFM value tiers at scale: the one-statement SQL recompute against what a data analyst would write.

    SCRM_DATA_DIR=.data/bench .venv/bin/python bench/rfm.py                    # 1,000,000 customers
    SCRM_DATA_DIR=.data/bench-small .venv/bin/python bench/rfm.py --customers 20000

An empty database is first filled with customers.demo_data.seed_demo (≈20 trades per customer).
Then, on the same data and the same as-of date:
  1. tagging.tiers.tier_run_compute from empty tier tables (every row written, every change logged),
  2. the same again (nothing changes: the pure computation and comparison cost),
  3. the baseline: the window's trades COPY'd out of PostgreSQL into pandas, R/F/M by groupby,
     mean thresholds and the eight classes, and the classes compared with what SQL stored,
  4. tier_run_incremental for the customers of 10,000 new trades (removed again afterwards),
  5. a run one day later, when R moves for almost everyone (the nightly case).
Times are printed, never asserted.
"""

import argparse
import logging
import os
import sys
import time
from datetime import date, timedelta

import _common

_common.django_setup()

import pandas as pd  # noqa: E402
from _common import copy_out  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from customers.models import Customer  # noqa: E402
from tagging import tiers  # noqa: E402
from tagging.models import TierScheme  # noqa: E402

NEW_TRADES = 10_000
CLASSES = {  # (R high, F high, M high) → code, as the analyst would write it down from the spec
    (True, True, True): "important_value", (True, False, True): "important_development",
    (False, True, True): "important_maintain", (False, False, True): "important_retain",
    (True, True, False): "general_value", (True, False, False): "general_development",
    (False, True, False): "general_maintain", (False, False, False): "general_retain",
}


def timed(label: str, fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"  {label:<58} {seconds:8.2f} s", flush=True)
    return result, seconds


def ensure_data(customers: int, seed: int) -> None:
    call_command("migrate", verbosity=0)
    existing = Customer.objects.count()
    if existing:
        if existing != customers:
            print(f"note: the database already holds {existing:,} customers; using them (asked for {customers:,})")
        return
    try:
        from customers.demo_data import seed_demo
    except ImportError:
        sys.exit("customers.demo_data.seed_demo is not available yet; seed this database first")
    print(f"seeding {customers:,} customers with seed_demo(seed={seed}) …", flush=True)
    timed("seed_demo", seed_demo, customers=customers, seed=seed, stdout=sys.stdout)


def pandas_load(as_of: date, window_days: int) -> tuple[pd.DataFrame, pd.Series]:
    start, end = tiers.tier_window(as_of=as_of, window_days=window_days)
    trades = pd.read_csv(copy_out("SELECT customer_id, traded_at, amount FROM customers_trade "
                                  "WHERE traded_at >= %s AND traded_at < %s", [start, end]),
                         names=["customer_id", "traded_at", "amount"])
    customers = pd.read_csv(copy_out("SELECT id FROM customers_customer", []), names=["id"])["id"]
    return trades, customers


def pandas_classes(trades: pd.DataFrame, customers: pd.Series, as_of: date) -> pd.Series:
    """R/F/M by groupby, mean thresholds, eight classes; customers without trades are no_trade."""
    day = pd.to_datetime(trades["traded_at"], utc=True, format="ISO8601").dt.tz_convert("Asia/Shanghai")
    trades = trades.assign(day=day.dt.tz_localize(None).dt.normalize())
    rfm = trades.groupby("customer_id").agg(last=("day", "max"), f=("amount", "size"), m=("amount", "sum"))
    rfm["r"] = (pd.Timestamp(as_of) - rfm["last"]).dt.days
    r_high = rfm["r"] < rfm["r"].mean()
    f_high = rfm["f"] > rfm["f"].mean()
    m_high = rfm["m"] > rfm["m"].mean()
    keys = list(zip(r_high, f_high, m_high, strict=True))
    classes = pd.Series([CLASSES[k] for k in keys], index=rfm.index)
    return classes.reindex(customers.values, fill_value="no_trade")


def stored_classes() -> pd.Series:
    frame = pd.read_csv(copy_out("SELECT customer_id, code FROM tagging_customertier", []), names=["id", "code"])
    return frame.set_index("id")["code"]


def fresh_tier_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tagging_customertierhistory, tagging_customertier")
        cursor.execute("DELETE FROM tagging_tierrun")


def insert_new_trades(as_of: date) -> tuple[list[int], str]:
    """NEW_TRADES trades at noon on ``as_of`` for as many different customers; returns their ids."""
    tag = f"BENCH-INC-{time.time_ns()}-"
    noon = tiers.tier_window(as_of=as_of, window_days=1)[0] + timedelta(hours=12)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO customers_trade (external_id, customer_id, product_id, traded_at, side, amount) "
            "SELECT %s || c.id, c.id, (SELECT min(id) FROM customers_product), %s, 'buy', "
            "       round((1000 + (hashint8(c.id) & 65535))::numeric, 2) "
            "FROM (SELECT id FROM customers_customer ORDER BY hashint8(id) LIMIT %s) c RETURNING customer_id",
            [tag, noon, NEW_TRADES])
        ids = [row[0] for row in cursor.fetchall()]
    return ids, tag


def main() -> None:
    logging.getLogger("tagging.tiers").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="default: today (Asia/Shanghai)")
    args = parser.parse_args()

    ensure_data(args.customers, args.seed)
    scheme = tiers.tier_scheme_ensure_default()
    if scheme.method != TierScheme.Method.MEAN:
        sys.exit(f"the active scheme uses {scheme.method}; the baseline here computes means")
    as_of = args.as_of or timezone.localdate()
    n_customers = Customer.objects.count()
    start, end = tiers.tier_window(as_of=as_of, window_days=scheme.window_days)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customers_trade")
        n_trades = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM customers_trade WHERE traded_at >= %s AND traded_at < %s", [start, end])
        n_window = cursor.fetchone()[0]
    print(f"\nRFM tiers: {n_customers:,} customers, {n_trades:,} trades ({n_window:,} in the {scheme.window_days}-day "
          f"window ending {as_of}), SCRM_DATA_DIR={os.environ['SCRM_DATA_DIR']}\n")

    print("SQL (tagging.tiers.tier_run_compute, one statement):")
    fresh_tier_tables()
    first, t_first = timed("full recompute, first run (all rows written)", tiers.tier_run_compute,
                           as_of=as_of, requested_by="bench")
    second, t_second = timed("full recompute, rerun on the same data (nothing changes)", tiers.tier_run_compute,
                             as_of=as_of, requested_by="bench")
    print(f"    thresholds: R < {first.threshold_r} d, F > {first.threshold_f}, M > {first.threshold_m}; "
          f"changes: first {first.changed:,}, rerun {second.changed:,}")
    print("    " + ", ".join(f"{code} {n:,}" for code, n in sorted(first.counts.items(), key=lambda kv: -kv[1])))

    print("\npandas baseline (COPY the window's trades out, groupby, mean thresholds):")
    (trades, customers), t_load = timed("load trades + customer ids into pandas", pandas_load, as_of,
                                        scheme.window_days)
    expected, t_compute = timed("R/F/M groupby + classes", pandas_classes, trades, customers, as_of)
    t_pandas = t_load + t_compute
    del trades
    got = stored_classes().reindex(expected.index)
    mismatches = expected[got.values != expected.values]
    print(f"  {'pandas total':<58} {t_pandas:8.2f} s")
    print(f"\n  ratio pandas / SQL: {t_pandas / t_second:.1f}× against the rerun, "
          f"{t_pandas / t_first:.1f}× against the first run (which also writes {n_customers:,} rows)")
    print(f"  same classes: {len(expected) - len(mismatches):,} of {len(expected):,}; mismatches: {len(mismatches):,}")
    for cid in mismatches.index[:10]:
        print(f"    customer {cid}: SQL {got[cid]}, pandas {expected[cid]}")

    print(f"\nincremental (tagging.tiers.tier_run_incremental) after {NEW_TRADES:,} new trades:")
    ids, tag = insert_new_trades(as_of)
    run, t_incr = timed(f"incremental run for {len(set(ids)):,} customers", tiers.tier_run_incremental,
                        customer_ids=ids, as_of=as_of, source="bench")
    print(f"    {run.changed:,} tier changes; {t_incr * 1000 / max(1, len(ids)):.3f} ms per customer")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM customers_trade WHERE external_id LIKE %s", [tag + "%"])

    print("\nnightly case:")
    nxt, t_next = timed("full recompute one day later (R moves for nearly everyone)", tiers.tier_run_compute,
                        as_of=as_of + timedelta(days=1), requested_by="bench")
    print(f"    {nxt.changed:,} tier changes")
    print("\nsummary")
    print(f"  SQL full first {t_first:.2f} s | rerun {t_second:.2f} s | next day {t_next:.2f} s | "
          f"pandas {t_pandas:.2f} s (load {t_load:.2f} + compute {t_compute:.2f}) | "
          f"ratio pandas/SQL {t_pandas / t_second:.1f}× (rerun), {t_pandas / t_next:.1f}× (next day), "
          f"{t_pandas / t_first:.1f}× (first) | mismatches {len(mismatches)} | incremental {t_incr:.2f} s")


if __name__ == "__main__":
    main()
