"""Bench: live counts of segment rules (the one compiled SQL query) against a pandas baseline, in the same run.

    SCRM_DATA_DIR=.data/bench .venv/bin/python bench/segments.py                      # 1,000,000 customers
    SCRM_DATA_DIR=.data/bench-small .venv/bin/python bench/segments.py --customers 20000 --runs 10

An empty database is first filled with customers.demo_data.seed_demo (≈20 trades and ≈50 events per
customer), like bench/customers_list.py; tiers are computed once (tagging.tiers.tier_run_compute) and a few
tags are given to a deterministic ~10–30% of the customers when the database has none, all kept for later runs.

For each typical rule it prints the p50/p95 of
  * count    — ``Customer.objects.filter(rule_compile(rule)).count()`` as HQ (firm-wide scope): what the builder's
               live count and ``POST /api/v1/segments/preview/`` run;
  * preview  — ``segments.selectors.rule_preview`` (count + 10 sample rows + the tier and branch breakdowns);
  * pandas   — the baseline: COPY the columns the rule needs (customers, tiers, current tags, and for window rules
               the window's trades / events of the type) out of PostgreSQL into pandas and filter there (median
               of --baseline-runs runs, load included — that is what the analyst pays for each question);
and the ratio baseline / count p50, checks that pandas and SQL agree on the count, and says PASS/MISS against the
aims: count p95 < 300 ms for attribute/tag/tier rules and < 2 s for rules with a trade or event window.
"""

import argparse
import time
from datetime import timedelta

import _common

_common.django_setup()

import pandas as pd  # noqa: E402
from _common import copy_out, timed_ms  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from core.models import User  # noqa: E402
from customers.models import BehaviourEvent, Customer, Trade  # noqa: E402
from segments.rules import rule_compile, rule_validate  # noqa: E402
from segments.selectors import rule_preview  # noqa: E402
from tagging.models import CustomerTag, CustomerTier, Tag  # noqa: E402

AIM_SIMPLE_MS = 300
AIM_WINDOW_MS = 2000
BENCH_TAGS = [("margin_intent", 10, 0), ("star_intent", 20, 3), ("idle_funds", 30, 7)]  # code, % of customers, salt


# --- data ----------------------------------------------------------------------------------------

def dataset_ensure(*, customers: int, seed: int) -> None:
    """The seeded customers (bench/_common.py), then tiers once and the bench tags when there are none."""
    _common.dataset_ensure(customers=customers, seed=seed)
    if not CustomerTier.objects.exists():
        from tagging.tiers import tier_run_compute

        started = time.perf_counter()
        tier_run_compute(requested_by="bench")
        print(f"tiers computed in {time.perf_counter() - started:.1f} s")
    vacuum_if_needed()
    tags = {code for code, _p, _s in BENCH_TAGS}
    if not CustomerTag.objects.filter(tag__code__in=tags).exists():
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for code, percent, salt in BENCH_TAGS:
                tag = Tag.objects.filter(code=code).first()
                if tag is None:
                    continue
                # deterministic members; created 0–89 days ago so "within N days" has something to cut
                cursor.execute("""
                    INSERT INTO tagging_customertag (customer_id, tag_id, source, set_by_label, evidence,
                                                     evidence_data, created_at)
                    SELECT id, %s, 'rule', 'bench', '', '{}'::jsonb, now() - ((id %% 90) * interval '1 day')
                    FROM customers_customer WHERE ((id * 7919 + %s) %% 100) < %s
                    ON CONFLICT DO NOTHING
                """, [tag.pk, salt, percent])
            cursor.execute("ANALYZE tagging_customertag")
        print(f"bench tags given in {time.perf_counter() - started:.1f} s")


def vacuum_if_needed() -> None:
    """Window rules read trades and events index-only, which needs the visibility map that VACUUM sets. A bulk-
    seeded table has none until autovacuum gets round to it (tens of minutes at 50M events), and until then the
    planner falls back to scanning the tables: vacuum them now, as autovacuum would, so the bench measures the
    steady state."""
    with connection.cursor() as cursor:
        for table in ("customers_trade", "customers_behaviourevent"):
            cursor.execute("SELECT relpages, relallvisible FROM pg_class WHERE relname = %s", [table])
            pages, visible = cursor.fetchone()
            if pages and visible < 0.9 * pages:
                started = time.perf_counter()
                cursor.execute(f"VACUUM (ANALYZE) {table}")
                print(f"{table}: {visible:,} of {pages:,} pages all-visible; vacuumed in {time.perf_counter() - started:.1f} s")


# --- the pandas baseline ---------------------------------------------------------------------------

def load_customers() -> pd.DataFrame:
    return pd.read_csv(copy_out("SELECT id, risk_level, total_assets, lifecycle_stage, birth_date "
                                "FROM customers_customer", []),
                       names=["id", "risk_level", "total_assets", "lifecycle_stage", "birth_date"],
                       parse_dates=["birth_date"], keep_default_na=False, na_values={"birth_date": [""]})


def load_tiers() -> pd.DataFrame:
    return pd.read_csv(copy_out("SELECT customer_id, code FROM tagging_customertier", []), names=["id", "tier"])


def load_tags(now) -> pd.DataFrame:
    return pd.read_csv(copy_out(
        "SELECT ct.customer_id, t.code, ct.created_at FROM tagging_customertag ct JOIN tagging_tag t ON t.id = ct.tag_id "
        "WHERE ct.expires_at IS NULL OR ct.expires_at > %s", [now]), names=["id", "tag", "created_at"],
        parse_dates=["created_at"])


def load_trades(now, days: int) -> pd.DataFrame:
    trades = pd.read_csv(copy_out("SELECT customer_id, product_id FROM customers_trade WHERE traded_at >= %s "
                                  "AND traded_at <= %s", [now - timedelta(days=days), now]), names=["id", "product_id"])
    products = pd.read_csv(copy_out("SELECT id, type FROM customers_product", []), names=["product_id", "type"])
    return trades.merge(products, on="product_id")


def load_events(now, days: int, event_type: str) -> pd.DataFrame:
    return pd.read_csv(copy_out("SELECT customer_id FROM customers_behaviourevent WHERE type = %s AND occurred_at >= %s "
                                "AND occurred_at <= %s", [event_type, now - timedelta(days=days), now]), names=["id"])


def _years_ago(today, years: int):
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def baseline_c45_rich(now):
    c = load_customers()
    return int(((c.risk_level.isin(["C4", "C5"])) & (c.total_assets >= 500_000)).sum())


def baseline_stage_tag(now):
    c, tags = load_customers(), load_tags(now)
    tagged = set(tags.loc[tags.tag == "margin_intent", "id"])
    return int((c.lifecycle_stage.isin(["retain", "revenue"]) & c.id.isin(tagged)).sum())


def baseline_tier_age(now):
    c, tiers = load_customers(), load_tiers()
    today = timezone.localdate(now)
    low, high = pd.Timestamp(_years_ago(today, 30)), pd.Timestamp(_years_ago(today, 51))
    c = c.merge(tiers, on="id", how="left")
    return int((c.tier.isin(["important_value", "important_development"]) & (c.birth_date <= low)
                & (c.birth_date > high)).sum())


def baseline_mixed(now):
    c, tiers, tags = load_customers(), load_tiers(), load_tags(now)
    recent = tags[(tags.tag == "star_intent") & (tags.created_at >= pd.Timestamp(now - timedelta(days=30)))]
    c = c.merge(tiers, on="id", how="left")
    match = (c.tier.eq("important_value") | c.id.isin(set(recent.id))) & ~c.risk_level.isin(["C1"])
    return int(match.sum())


def baseline_trades(now):
    c, trades = load_customers(), load_trades(now, 90)
    counts = trades[trades.type == "fund"].groupby("id").size()
    busy = set(counts[counts >= 3].index)
    return int((c.id.isin(busy) & c.risk_level.isin(["C3", "C4", "C5"])).sum())


def baseline_events(now):
    c, events, trades = load_customers(), load_events(now, 30, "fund_page_view"), load_trades(now, 365)
    views = events.groupby("id").size()
    curious = set(views[views >= 3].index)
    bought = set(trades.loc[trades.type == "fund", "id"])
    return int((c.id.isin(curious) & ~c.id.isin(bought)).sum())


def attr(field, op, value):
    return {"type": "attribute", "field": field, "op": op, "value": value}


SCENARIOS = [
    # name, rule, has a trade/event window, baseline
    ("attr: C4/C5 and assets ≥ 500k",
     {"op": "and", "rules": [attr("risk_level", "in", ["C4", "C5"]), attr("total_assets", "gte", 500000)]},
     False, baseline_c45_rich),
    ("attr+tag: retain/revenue, has margin_intent",
     {"op": "and", "rules": [attr("lifecycle_stage", "in", ["retain", "revenue"]),
                             {"type": "tag", "op": "has", "tag": "margin_intent"}]}, False, baseline_stage_tag),
    ("tier+attr: important value/dev, age 30–50",
     {"op": "and", "rules": [{"type": "tier", "op": "in", "value": ["important_value", "important_development"]},
                             attr("age", "between", [30, 50])]}, False, baseline_tier_age),
    ("tier|tag(30d) and NOT C1",
     {"op": "and", "rules": [{"op": "or", "rules": [{"type": "tier", "op": "in", "value": ["important_value"]},
                                                    {"type": "tag", "op": "has", "tag": "star_intent", "within_days": 30}]},
                             {**attr("risk_level", "in", ["C1"]), "not": True}]}, False, baseline_mixed),
    ("trades: ≥3 fund trades in 90d, C3+",
     {"op": "and", "rules": [{"type": "trades", "measure": "count", "op": "gte", "value": 3, "within_days": 90,
                              "product_type": "fund"}, attr("risk_level", "in", ["C3", "C4", "C5"])]},
     True, baseline_trades),
    ("events: ≥3 fund page views in 30d, no fund trade in 365d",
     {"op": "and", "rules": [{"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3,
                              "within_days": 30},
                             {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365,
                              "product_type": "fund"}]}, True, baseline_events),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each SQL count / preview")
    parser.add_argument("--baseline-runs", type=int, default=3, help="timed runs of each pandas baseline")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    dataset_ensure(customers=args.customers, seed=args.seed)
    hq = User.objects.filter(role="hq_manager", is_active=True).first() or User.objects.filter(is_superuser=True).first()
    now = timezone.now()
    print(f"\ncustomers {Customer.objects.count():,} · trades {Trade.objects.count():,} · "
          f"events {BehaviourEvent.objects.count():,} · tiers {CustomerTier.objects.count():,} · "
          f"tags {CustomerTag.objects.count():,} · as {hq} · {args.runs} runs (pandas {args.baseline_runs})\n")
    header = (f"{'rule':<56}{'count':>10}{'p50 ms':>9}{'p95 ms':>9}{'prev p50':>10}{'pandas ms':>11}{'×faster':>9}"
              f"{'aim':>8}  result")
    print(header)
    print("-" * len(header))
    misses = 0
    for name, rule, window, baseline in SCENARIOS:
        rule_validate(rule)

        def count(rule=rule):
            return Customer.objects.visible_to(hq).filter(rule_compile(rule, now=now)).count()

        p50, p95, n = timed_ms(count, runs=args.runs, warmup=2)
        prev50, _prev95, _ = timed_ms(lambda rule=rule: rule_preview(rule, principal=hq, now=now), runs=max(3, args.runs // 4),
                                   warmup=1)
        base50, _b95, base_n = timed_ms(lambda baseline=baseline: baseline(now), runs=args.baseline_runs, warmup=0)
        aim = AIM_WINDOW_MS if window else AIM_SIMPLE_MS
        verdict = "PASS" if p95 < aim else "MISS"
        misses += verdict == "MISS"
        agree = "" if base_n == n else f"  (pandas counted {base_n:,}: MISMATCH)"
        print(f"{name:<56}{n:>10,}{p50:>9.1f}{p95:>9.1f}{prev50:>10.1f}{base50:>11.1f}{base50 / p50:>8.1f}×"
              f"{'<' + str(aim):>8}  {verdict}{agree}", flush=True)
    print(f"\n{len(SCENARIOS) - misses}/{len(SCENARIOS)} rules within their aim (count p95 < {AIM_SIMPLE_MS} ms for "
          f"attribute/tag/tier rules, < {AIM_WINDOW_MS} ms with a trade or event window).")


if __name__ == "__main__":
    main()
