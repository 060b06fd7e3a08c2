"""RFM tiers: the SQL recompute against an independent pandas computation, and its guarantees.

The pandas side works in integer cents and compares sums instead of dividing (R < mean ⇔
R·n < ΣR), so it is exact, and takes Asia/Shanghai dates from pandas' own time-zone data.
"""

import threading
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import count

import pandas as pd
import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import database_url
from core.errors import ApplicationError
from core.events import TierChanged, listening
from core.models import Branch
from customers.models import Customer, Product, Trade
from customers.tests.factories import CustomerFactory, TradeFactory
from tagging import tiers
from tagging.models import CustomerTier, CustomerTierHistory, TierDefinition, TierRun, TierScheme
from tagging.tasks import tier_run as tier_run_task

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 3, 31)
CLASSES = {  # (R high, F high, M high) → code, written out from the spec, not read from the database
    (True, True, True): "important_value",
    (True, False, True): "important_development",
    (False, True, True): "important_maintain",
    (False, False, True): "important_retain",
    (True, True, False): "general_value",
    (True, False, False): "general_development",
    (False, True, False): "general_maintain",
    (False, False, False): "general_retain",
}
UTC_TIMES = [time(0, 0), time(4, 0), time(15, 59, 59), time(16, 0), time(23, 30)]  # 16:00 UTC = 00:00 Shanghai
_ids = count(1)


# --- the independent implementation ---------------------------------------------------------

def pandas_tiers(*, customer_ids, trades, as_of, window_days, method, fixed=None) -> dict:
    """{customer_id: (code, r, f, m_cents)}; ``trades`` are (customer_id, aware datetime, cents)."""
    result = {cid: ("no_trade", None, 0, 0) for cid in customer_ids}
    df = pd.DataFrame(trades, columns=["customer_id", "traded_at", "cents"])
    if df.empty:
        return result
    df["day"] = pd.to_datetime(df["traded_at"], utc=True).dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    df["day"] = df["day"].dt.normalize()
    end = pd.Timestamp(as_of)
    df = df[(df["day"] > end - pd.Timedelta(days=window_days)) & (df["day"] <= end)]
    if df.empty:
        return result
    g = df.groupby("customer_id").agg(last=("day", "max"), f=("cents", "size"), m=("cents", "sum"))
    g["r"] = (end - g["last"]).dt.days
    n = len(g)
    if method == "mean":
        r_high, f_high, m_high = g.r * n < g.r.sum(), g.f * n > g.f.sum(), g.m * n > g.m.sum()
    elif method == "median":  # medians of integers are exact halves in float
        r_high, f_high, m_high = g.r < g.r.median(), g.f > g.f.median(), g.m > g.m.median()
    else:
        fr, ff, fm = fixed
        r_high, f_high, m_high = g.r < float(fr), g.f > float(ff), g.m > int(fm * 100)
    for cid in g.index:
        key = (bool(r_high[cid]), bool(f_high[cid]), bool(m_high[cid]))
        result[cid] = (CLASSES[key], int(g.r[cid]), int(g.f[cid]), int(g.m[cid]))
    return result


# --- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture
def scheme(db):
    return tiers.tier_scheme_ensure_default()


@pytest.fixture
def stock(db):
    branch, _ = Branch.objects.get_or_create(code="BJ01", defaults={"name": "BJ01 营业部"})
    product, _ = Product.objects.get_or_create(code="P-RFM", defaults={"name": "测试基金", "type": "fund",
                                                                       "risk_level": "R3"})
    return branch, product


def make_world(stock, trades_per_customer) -> tuple[list[int], list[tuple]]:
    """Customers and their trades via bulk_create; ``trades_per_customer`` is a list (one per customer)
    of lists of (aware datetime, cents, side)."""
    branch, product = stock
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"RFM{next(_ids):08d}", name="客户", branch=branch) for _ in trades_per_customer])
    rows, trades = [], []
    for customer, items in zip(customers, trades_per_customer, strict=True):
        for at, cents, side in items:
            rows.append(Trade(external_id=f"RT{next(_ids):010d}", customer=customer, product=product, traded_at=at,
                              side=side, amount=Decimal(cents) / 100))
            trades.append((customer.pk, at, cents))
    Trade.objects.bulk_create(rows)
    return [c.pk for c in customers], trades


def local(day: date, hh: int = 10, mm: int = 0) -> datetime:
    """A Shanghai wall-clock time as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) - timedelta(hours=8)


def stored(ids) -> dict:
    rows = CustomerTier.objects.filter(customer_id__in=ids).values_list("customer_id", "code", "r", "f", "m")
    return {cid: (code, r, f, int(m * 100)) for cid, code, r, f, m in rows}


def set_scheme(scheme, **fields):
    for k, v in fields.items():
        setattr(scheme, k, v)
    scheme.save()
    return scheme


@contextmanager
def rolled_back():
    """One hypothesis example's rows live in a savepoint that is rolled back afterwards."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# --- property: SQL == pandas ------------------------------------------------------------------

@st.composite
def worlds(draw, methods=("mean", "median", "fixed")):
    window = draw(st.sampled_from([1, 2, 7, 30, 365]))
    offsets = st.one_of(st.sampled_from([-1, 0, 1, window - 1, window, window + 1]), st.integers(-2, window + 2))
    cents = st.one_of(st.sampled_from([100, 250, 1000]), st.integers(1, 1_000_000))  # few values → many ties
    trade = st.tuples(offsets, st.sampled_from(UTC_TIMES), cents, st.sampled_from(["buy", "sell"]))
    customers = draw(st.lists(st.lists(trade, max_size=6), min_size=1, max_size=8))
    fixed_value = st.one_of(st.integers(0, 400).map(Decimal), st.decimals(0, 400, places=2))
    fixed = (draw(fixed_value), draw(st.one_of(st.integers(0, 6).map(Decimal), st.decimals(0, 6, places=2))),
             draw(st.one_of(st.sampled_from([Decimal("2.50"), Decimal("10.00")]), st.decimals(0, 5000, places=2))))
    return {"window": window, "method": draw(st.sampled_from(methods)), "fixed": fixed,
            "customers": [[(datetime.combine(AS_OF - timedelta(days=o), t, tzinfo=UTC), c, s) for o, t, c, s in items]
                          for items in customers]}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(world=worlds())
def test_sql_tiers_equal_an_independent_pandas_computation(scheme, stock, world):
    with rolled_back():
        set_scheme(scheme, window_days=world["window"], method=world["method"], fixed_r=world["fixed"][0],
                   fixed_f=world["fixed"][1], fixed_m=world["fixed"][2])
        ids, trades = make_world(stock, world["customers"])
        run = tiers.tier_run_compute(as_of=AS_OF)
        expected = pandas_tiers(customer_ids=ids, trades=trades, as_of=AS_OF, window_days=world["window"],
                                method=world["method"], fixed=world["fixed"])
        assert stored(ids) == expected
        assert run.status == "done" and run.progress == 100 and run.duration_ms is not None
        assert sum(run.counts.values()) == len(ids)
        assert run.changed == len(ids) == CustomerTierHistory.objects.filter(run=run).count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(world=worlds(methods=("mean", "median")), new=st.lists(
    st.tuples(st.integers(0, 8), st.integers(0, 3), st.sampled_from(UTC_TIMES), st.integers(1, 500_000)), max_size=6))
def test_incremental_run_equals_pandas_with_the_base_runs_thresholds(scheme, stock, world, new):
    with rolled_back():
        set_scheme(scheme, window_days=world["window"], method=world["method"])
        ids, trades = make_world(stock, world["customers"])
        base = tiers.tier_run_compute(as_of=AS_OF)
        before = stored(ids)
        touched = sorted({ids[i % len(ids)] for i, *_ in new})
        added = [Trade(external_id=f"RN{next(_ids):010d}", customer_id=ids[i % len(ids)], product=stock[1],
                       traded_at=datetime.combine(AS_OF - timedelta(days=d), t, tzinfo=UTC), side="buy",
                       amount=Decimal(c) / 100) for i, d, t, c in new]
        Trade.objects.bulk_create(added)
        trades += [(t.customer_id, t.traded_at, int(t.amount * 100)) for t in added]
        run = tiers.tier_run_incremental(customer_ids=touched, as_of=AS_OF)
        after = stored(ids)
        if base.threshold_r is None:  # nobody traded at the base run: nothing to compare against
            assert run is None and after == before
            return
        expected = pandas_tiers(customer_ids=ids, trades=trades, as_of=AS_OF, window_days=world["window"],
                                method="fixed", fixed=(base.threshold_r, base.threshold_f, base.threshold_m))
        assert {cid: after[cid] for cid in touched} == {cid: expected[cid] for cid in touched}
        assert {cid: after[cid] for cid in ids if cid not in touched} == {
            cid: before[cid] for cid in ids if cid not in touched}
        if touched:
            changes = set(CustomerTierHistory.objects.filter(run=run).values_list("customer_id", "from_code", "to_code"))
            assert changes == {(cid, before[cid][0], after[cid][0]) for cid in touched if before[cid][0] != after[cid][0]}
            assert tiers.tier_run_latest_full() == base and run.changed == len(changes)


# --- the rules, one example each ---------------------------------------------------------------

def test_window_boundaries_are_asia_shanghai_dates(scheme, stock):
    window_start = AS_OF - timedelta(days=365)  # this date is OUT, the next one IN; AS_OF itself is IN
    ids, _ = make_world(stock, [
        [(local(window_start, 12), 100, "buy")],                                   # out
        [(datetime.combine(window_start, time(16, 0), tzinfo=UTC), 100, "buy")],   # 00:00 next day in Shanghai: in
        [(datetime.combine(window_start, time(15, 59, 59), tzinfo=UTC), 100, "buy")],  # 23:59:59 on start: out
        [(datetime.combine(AS_OF - timedelta(days=1), time(23, 30), tzinfo=UTC), 100, "sell")],  # 07:30 AS_OF: in
        [(datetime.combine(AS_OF, time(15, 59), tzinfo=UTC), 100, "buy")],         # 23:59 on AS_OF: in, R = 0
        [(datetime.combine(AS_OF, time(16, 0), tzinfo=UTC), 100, "buy")],          # 00:00 the day after: out
    ])
    tiers.tier_run_compute(as_of=AS_OF)
    got = stored(ids)
    assert [got[i][0] == "no_trade" for i in ids] == [True, False, True, False, False, True]
    assert [got[i][1] for i in ids] == [None, 364, None, 0, 0, None]


def test_values_equal_to_the_mean_are_low_and_customers_without_trades_do_not_count(scheme, stock):
    ids, _ = make_world(stock, [
        [(local(AS_OF), 10000, "buy")],                                                     # R 0, F 1, M 100
        [(local(AS_OF - timedelta(days=5)), 10000, "buy"), (local(AS_OF - timedelta(days=2)), 10000, "sell")],
        [(local(AS_OF - timedelta(days=d)), 10000, "buy") for d in (4, 6, 9)],              # R 4, F 3, M 300
        [],                                                                                 # no trade
        [(local(AS_OF - timedelta(days=400)), 99_999_999, "buy")],                          # outside the window
    ])
    run = tiers.tier_run_compute(as_of=AS_OF)
    assert (run.threshold_r, run.threshold_f, run.threshold_m) == (Decimal("2.00"), Decimal("2.00"), Decimal("200.00"))
    assert [stored(ids)[i][0] for i in ids] == [
        "general_development", "general_retain", "important_maintain", "no_trade", "no_trade"]
    assert run.counts == {"general_development": 1, "general_retain": 1, "important_maintain": 1, "no_trade": 2}


def test_median_interpolates_and_ties_are_low(scheme, stock):
    set_scheme(scheme, method="median")
    days = [0, 1, 3, 10]        # median R 2 → R 0, 1 high
    counts = [1, 2, 2, 5]       # median F 2 → only F 5 high
    amounts = [100, 200, 300, 400]  # median M 250 (yuan, in total) → 300, 400 high
    ids, _ = make_world(stock, [
        [(local(AS_OF - timedelta(days=d + k)), amount * 100 // n, "buy") for k in range(n)]
        for d, n, amount in zip(days, counts, amounts, strict=True)])
    run = tiers.tier_run_compute(as_of=AS_OF)
    assert (run.threshold_r, run.threshold_f, run.threshold_m) == (Decimal("2.00"), Decimal("2.00"), Decimal("250.00"))
    assert [stored(ids)[i][0] for i in ids] == [
        "general_development", "general_development", "important_retain", "important_maintain"]


def test_mean_thresholds_are_rounded_in_the_direction_that_keeps_comparisons_exact(scheme, stock):
    ids, _ = make_world(stock, [[(local(AS_OF), 1, "buy")], [(local(AS_OF), 1, "buy")],
                                [(local(AS_OF - timedelta(days=1)), 3, "buy")],
                                [(local(AS_OF), 1, "buy"), (local(AS_OF), 1, "buy")]])
    run = tiers.tier_run_compute(as_of=AS_OF)
    # mean R 1/4, mean F 5/4, mean M 1.75 cents: stored as 0.01 (down), so M = 0.02 stays above it;
    # rounding to nearest (0.02) would have made the fourth customer "M low"
    assert (run.threshold_r, run.threshold_f, run.threshold_m) == (Decimal("0.25"), Decimal("1.25"), Decimal("0.01"))
    assert [stored(ids)[i][0] for i in ids] == [
        "general_development", "general_development", "important_retain", "important_value"]


def test_fixed_thresholds(scheme, stock):
    set_scheme(scheme, method="fixed", fixed_r=Decimal(30), fixed_f=Decimal(1), fixed_m=Decimal(500))
    ids, _ = make_world(stock, [
        [(local(AS_OF - timedelta(days=29)), 50001, "buy"), (local(AS_OF - timedelta(days=40)), 1, "buy")],
        [(local(AS_OF - timedelta(days=30)), 50000, "buy")],
    ])
    run = tiers.tier_run_compute(as_of=AS_OF)
    assert (run.method, run.threshold_r, run.threshold_f, run.threshold_m) == ("fixed", 30, 1, 500)
    assert [stored(ids)[i][0] for i in ids] == ["important_value", "general_retain"]


def test_fixed_method_without_values_is_refused(scheme, stock):
    set_scheme(scheme, method="fixed", fixed_r=Decimal(30), fixed_f=None, fixed_m=None)
    with pytest.raises(ApplicationError) as err:
        tiers.tier_run_compute(as_of=AS_OF)
    assert err.value.code == "tier_fixed_thresholds_missing" and not TierRun.objects.exists()


def test_empty_window_puts_everyone_in_no_trade(scheme, stock):
    ids, _ = make_world(stock, [[], [(local(AS_OF + timedelta(days=1)), 100, "buy")]])
    run = tiers.tier_run_compute(as_of=AS_OF)
    assert run.threshold_r is None and run.counts == {"no_trade": 2}
    assert {stored(ids)[i] for i in ids} == {("no_trade", None, 0, 0)}


def test_another_scheme_maps_the_same_way(scheme, stock):
    set_scheme(scheme, active=False)
    other = TierScheme.objects.create(code="simple", name="简单", window_days=30, method="mean")
    for key in range(8):
        TierDefinition.objects.create(scheme=other, code=f"c{key}", label=f"类{key}", r_high=bool(key & 4),
                                      f_high=bool(key & 2), m_high=bool(key & 1), rank=key)
    TierDefinition.objects.create(scheme=other, code="idle", label="无交易", rank=9)
    ids, _ = make_world(stock, [[(local(AS_OF), 100, "buy")] * 2, [(local(AS_OF - timedelta(days=9)), 50, "buy")], []])
    run = tiers.tier_run_compute(as_of=AS_OF)
    assert run.scheme == other and run.window_days == 30
    assert [stored(ids)[i][0] for i in ids] == ["c7", "c0", "idle"]


def test_an_incomplete_scheme_is_refused_before_anything_is_written(scheme, stock):
    TierDefinition.objects.filter(scheme=scheme, code="general_retain").delete()
    make_world(stock, [[(local(AS_OF), 100, "buy")]])
    with pytest.raises(ApplicationError) as err:
        tiers.tier_run_compute(as_of=AS_OF)
    assert err.value.code == "tier_scheme_incomplete" and "R低F低M低" in err.value.message
    assert not CustomerTier.objects.exists()


# --- runs are versioned and only real changes are events ---------------------------------------

def test_rerun_with_the_same_data_changes_nothing(scheme, stock):
    ids, _ = make_world(stock, [[(local(AS_OF - timedelta(days=d)), 100 * (d + 1), "buy")] for d in range(6)] + [[]])
    first = tiers.tier_run_compute(as_of=AS_OF)
    snapshot = list(CustomerTier.objects.order_by("pk").values())
    second = tiers.tier_run_compute(as_of=AS_OF)
    assert second.changed == 0 and second.counts == first.counts
    assert list(CustomerTier.objects.order_by("pk").values()) == snapshot  # not even run_id moved
    assert CustomerTierHistory.objects.count() == len(ids)
    assert set(CustomerTierHistory.objects.values_list("from_code", flat=True)) == {""}


def test_history_rows_and_hooks_only_for_real_changes(scheme, stock, django_capture_on_commit_callbacks):
    ids, _ = make_world(stock, [[(local(AS_OF - timedelta(days=d)), 10000, "buy")] for d in (0, 10, 20)])
    tiers.tier_run_compute(as_of=AS_OF)
    before = stored(ids)
    TradeFactory(customer_id=ids[2], traded_at=local(AS_OF), amount=Decimal("900.00"))  # R 20 → 0, F and M up
    with listening(TierChanged) as heard:
        with django_capture_on_commit_callbacks(execute=True):
            second = tiers.tier_run_compute(as_of=AS_OF)
        with django_capture_on_commit_callbacks(execute=True):
            third = tiers.tier_run_compute(as_of=AS_OF)
    calls = [e.run_id for e in heard]
    after = stored(ids)
    changed = {cid for cid in ids if before[cid][0] != after[cid][0]}
    assert ids[2] in changed and after[ids[2]][0] == "important_value"
    rows = set(CustomerTierHistory.objects.filter(run=second).values_list("customer_id", "from_code", "to_code"))
    assert rows == {(cid, before[cid][0], after[cid][0]) for cid in changed}
    assert second.changed == len(changed) and third.changed == 0
    assert calls == [second.pk]  # the unchanged third run emits nothing
    assert CustomerTier.objects.get(customer_id=ids[2]).run_id == second.pk


def test_a_failing_subscriber_does_not_stop_the_others(scheme, stock, django_capture_on_commit_callbacks):
    from core.events import subscribe, unsubscribe

    make_world(stock, [[(local(AS_OF), 100, "buy")]])

    def broken(event):
        raise RuntimeError("webhook down")

    subscribe(TierChanged, broken)
    try:
        with listening(TierChanged) as heard, django_capture_on_commit_callbacks(execute=True):
            run = tiers.tier_run_compute(as_of=AS_OF)
    finally:
        unsubscribe(TierChanged, broken)
    assert [e.run_id for e in heard] == [run.pk]


# --- the advisory lock -------------------------------------------------------------------------

@contextmanager
def lock_held_elsewhere(shared=False):
    other = psycopg2.connect(database_url(connection.settings_dict))
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_lock{'_shared' if shared else ''}(%s)", [tiers.ADVISORY_LOCK_KEY])
        yield
    finally:
        other.close()


def test_a_second_full_run_is_refused_while_one_holds_the_lock(scheme, stock):
    ids, _ = make_world(stock, [[(local(AS_OF), 100, "buy")]])
    with lock_held_elsewhere():
        with pytest.raises(tiers.TierRunBusyError) as err:
            tiers.tier_run_compute(as_of=AS_OF)
        assert err.value.code == "tier_run_in_progress" and err.value.status_code == 409
        assert not TierRun.objects.exists() and not CustomerTier.objects.exists()
    run = tiers.tier_run_compute(as_of=AS_OF)  # released: the next one runs
    assert run.status == "done" and stored(ids)[ids[0]][0] != ""
    with connection.cursor() as cur:  # and this session let go of it too
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cur.fetchone()[0] == 0


def test_incremental_runs_wait_for_no_one_but_never_overlap_a_full_run(scheme, stock):
    ids, _ = make_world(stock, [[(local(AS_OF), 100, "buy")]])
    tiers.tier_run_compute(as_of=AS_OF)
    with lock_held_elsewhere():
        with pytest.raises(tiers.TierRunBusyError):
            tiers.tier_run_incremental(customer_ids=ids, as_of=AS_OF)
    with lock_held_elsewhere(shared=True):  # another incremental run holds it shared: still fine
        assert tiers.tier_run_incremental(customer_ids=ids, as_of=AS_OF).status == "done"
        with pytest.raises(tiers.TierRunBusyError):  # but a full run must not start under it
            tiers.tier_run_compute(as_of=AS_OF)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_full_runs_started_together_never_overlap(stock):
    tiers.tier_scheme_ensure_default()
    make_world(stock, [[(local(AS_OF - timedelta(days=d)), 100, "buy")] for d in range(50)])
    results = []
    barrier = threading.Barrier(2)

    def run():
        from django.db import connection as thread_connection

        barrier.wait()
        try:
            results.append(tiers.tier_run_compute(as_of=AS_OF).status)
        except tiers.TierRunBusyError:
            results.append("busy")
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "done" in results and sorted(results) in (["busy", "done"], ["done", "done"])
    assert CustomerTierHistory.objects.count() == 50  # whichever ran second found nothing to change


# --- incremental ---------------------------------------------------------------------------------

def test_incremental_without_a_full_run_does_nothing(scheme, stock):
    ids, _ = make_world(stock, [[(local(AS_OF), 100, "buy")]])
    assert tiers.tier_run_incremental(customer_ids=ids) is None
    assert tiers.tier_run_incremental(customer_ids=[]) is None
    assert not CustomerTier.objects.exists()


def test_incremental_reclassifies_only_the_given_customers(scheme, stock, django_capture_on_commit_callbacks):
    ids, _ = make_world(stock, [[(local(AS_OF - timedelta(days=d)), 10000, "buy")] for d in (0, 10, 20, 30)] + [[]])
    base = tiers.tier_run_compute(as_of=AS_OF)
    before = stored(ids)
    for cid in (ids[3], ids[4]):  # both get a big trade today; only ids[3] is passed in
        TradeFactory(customer_id=cid, traded_at=local(AS_OF), amount=Decimal("5000.00"))
    with listening(TierChanged) as heard, django_capture_on_commit_callbacks(execute=True):
        run = tiers.tier_run_incremental(customer_ids=[ids[3], ids[3]], as_of=AS_OF)
    calls = [e.run_id for e in heard]
    after = stored(ids)
    assert after[ids[3]] == ("important_value", 0, 2, 510000)
    assert after[ids[4]] == before[ids[4]] == ("no_trade", None, 0, 0)
    assert {cid: after[cid] for cid in ids[:3]} == {cid: before[cid] for cid in ids[:3]}
    assert (run.threshold_r, run.threshold_f, run.threshold_m) == (base.threshold_r, base.threshold_f, base.threshold_m)
    assert run.requested_by == "incremental:trades" and run.counts == {"important_value": 1} and run.changed == 1
    assert calls == [run.pk] and tiers.tier_run_latest_full() == base
    assert list(CustomerTierHistory.objects.filter(run=run).values_list("from_code", "to_code")) == [
        (before[ids[3]][0], "important_value")]


# --- the Celery task, the command, the schedule ---------------------------------------------------

def test_the_task_runs_a_queued_run_once(scheme, stock, operator, django_capture_on_commit_callbacks):
    make_world(stock, [[(local(AS_OF), 100, "buy")]])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = tiers.tier_run_start(actor=operator, as_of=AS_OF)
    assert len(queued) == 1 and run.status == "running" and run.progress == 0
    with pytest.raises(tiers.TierRunBusyError):  # a second click while it is queued
        tiers.tier_run_start(actor=operator)
    assert tier_run_task.apply(kwargs={"run_id": run.pk}).get() == run.pk
    run.refresh_from_db()
    assert (run.status, run.progress, run.requested_by, run.counts) == ("done", 100, operator.username,
                                                                        {"general_retain": 1})
    assert tier_run_task.apply(kwargs={"run_id": run.pk}).get() == run.pk  # redelivered: nothing new
    assert TierRun.objects.count() == 1 and CustomerTierHistory.objects.count() == 1
    assert tier_run_task.apply(kwargs={"run_id": 987654}).get() is None  # gone: return quietly


def test_a_busy_task_waits_and_the_last_attempt_gives_up(scheme, stock, operator,
                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = tiers.tier_run_start(actor=operator, as_of=AS_OF)
    with lock_held_elsewhere():
        with pytest.raises(tiers.TierRunBusyError):
            tiers.tier_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.status == "running" and "等待" in run.error
        tiers.tier_run_execute(run_id=run.pk, give_up_when_busy=True)
    run.refresh_from_db()
    assert run.status == "failed" and "另一个分层计算正在进行" in run.error


def test_only_operators_hq_and_admins_start_runs(scheme, branch_manager, advisor):
    for user in (branch_manager, advisor):
        with pytest.raises(ApplicationError) as err:
            tiers.tier_run_start(actor=user)
        assert err.value.status_code == 403
    assert not TierRun.objects.exists()


def test_scheduled_task_and_command(scheme, stock, capsys):
    ids, _ = make_world(stock, [[(local(AS_OF), 100, "buy")], []])
    run_id = tier_run_task.apply(kwargs={"as_of": AS_OF.isoformat()}).get()
    assert TierRun.objects.get(pk=run_id).requested_by == "schedule"
    call_command("compute_tiers", "--as-of", "2026-04-01")
    out = capsys.readouterr().out
    assert "as of 2026-04-01" in out and "0 tier changes" in out and CustomerTier.objects.get(customer_id=ids[0]).r == 1


def test_the_nightly_run_is_scheduled():
    from django.conf import settings as django_settings

    entry = next(e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "tagging.tier_run")
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {30}


# --- selectors ---------------------------------------------------------------------------------

@pytest.fixture
def two_branches(scheme, advisor, other_branch_advisor):
    bj = [CustomerFactory(advisor=advisor, total_assets=Decimal(1000)) for _ in range(3)]
    sh = [CustomerFactory(advisor=other_branch_advisor, total_assets=Decimal(50)) for _ in range(2)]
    for c in bj[:2] + sh[:1]:
        TradeFactory(customer=c, traded_at=local(AS_OF), amount=Decimal(100))
    tiers.tier_run_compute(as_of=AS_OF)
    return bj, sh


def test_overview_counts_and_assets_follow_scope(two_branches, branch_manager, hq_manager, operator):
    def by_code(user):
        overview = tiers.tier_overview(user=user)
        return {t["code"]: (t["count"], t["assets"]) for t in overview["tiers"] if t["count"]}, overview

    mine, overview = by_code(branch_manager)
    assert mine == {"general_retain": (2, Decimal(2000)), "no_trade": (1, Decimal(1000))}
    assert overview["total"] == 3 and overview["latest_run"].status == "done"
    everyone, overview = by_code(hq_manager)
    assert everyone == {"general_retain": (3, Decimal(2050)), "no_trade": (2, Decimal(1050))}
    assert [t["code"] for t in overview["tiers"]][:2] == ["important_value", "important_development"]
    assert overview["tiers"][0]["channels"] and by_code(operator)[0] == everyone


def test_transition_matrix_between_the_last_two_runs_is_scoped(two_branches, branch_manager, hq_manager):
    bj, sh = two_branches
    TradeFactory(customer=bj[2], traded_at=local(AS_OF), amount=Decimal(100))
    TradeFactory(customer=sh[1], traded_at=local(AS_OF), amount=Decimal(100))
    tiers.tier_run_compute(as_of=AS_OF)

    def cells(user):
        matrix = tiers.tier_transition_matrix(user=user)
        return {(r["code"], c["to"]): c["n"] for r in matrix["rows"] for c in r["cells"] if c["n"]}, matrix

    mine, matrix = cells(branch_manager)
    assert mine == {("no_trade", "general_retain"): 1, ("general_retain", "general_retain"): 2}
    assert matrix["moved"] == 1 and matrix["total"] == 3 and matrix["previous"] is not None
    assert cells(hq_manager)[0] == {("no_trade", "general_retain"): 2, ("general_retain", "general_retain"): 3}


def test_first_run_matrix_starts_from_untiered(two_branches, hq_manager):
    matrix = tiers.tier_transition_matrix(user=hq_manager)
    assert matrix["previous"] is None and matrix["rows"][0]["label"] == "未分层" and matrix["moved"] == 5


def test_customer_tier_for_the_360_page(two_branches):
    bj, _ = two_branches
    tier = tiers.customer_tier(customer=bj[0])
    assert (tier["code"], tier["label"], tier["r"], tier["f"], tier["m"], tier["as_of"]) == (
        "general_retain", "一般挽留", 0, 1, Decimal("100.00"), AS_OF)
    assert tier["colour"] and tier["cadence"]
    assert tiers.customer_tier(customer=CustomerFactory()) is None


def test_filter_and_annotate_customers_by_tier(two_branches, django_assert_num_queries):
    bj, sh = two_branches
    qs = Customer.objects.all()
    assert set(tiers.customer_filter_by_tier(qs, {"tier": "no_trade"})) == {bj[2], sh[1]}
    assert set(tiers.customer_filter_by_tier(qs, {"tier": ["no_trade", "general_retain"]})) == set(bj + sh)
    assert tiers.customer_filter_by_tier(qs, {}).count() == 5
    fresh = CustomerFactory()
    assert list(tiers.customer_filter_by_tier(qs, {"tier": ["none"]})) == [fresh]
    with django_assert_num_queries(1):
        rows = {c.pk: (c.tier_code, c.tier_label, c.tier_colour) for c in tiers.annotate_tier(qs)}
    assert rows[bj[0].pk] == ("general_retain", "一般挽留", "azure") and rows[fresh.pk] == (None, None, None)
