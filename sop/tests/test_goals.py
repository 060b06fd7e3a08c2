"""Journey goals measured in SQL: each goal type, the window, hold-out clients, goals met before entry,
and the treatment / hold-out / A-B summary."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from customers.models import Customer
from customers.tests.factories import ProductFactory, TradeFactory
from sop.engine import enroll_queryset, in_holdout
from sop.goals import goal_summary, goals_measure
from sop.models import Enrollment

pytestmark = pytest.mark.django_db

ENTRY = timezone.make_aware(timezone.datetime(2026, 11, 10, 10, 0))  # a Tuesday, 10:00 Beijing time
NOW = ENTRY + timedelta(days=15)  # after a 14-day window (goals are looked for up to 7 days after it)


@pytest.fixture
def journey_with(sop_kit):
    def make(goal, **extra):
        return sop_kit["publish"]([{"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id}],
                                  goal=goal, **extra)
    return make


def enroll(journey, customer, *, status="active", at=ENTRY, variant=""):
    return Enrollment.objects.create(journey=journey, version=journey.live_version, customer=customer, status=status,
                                     trigger_key=f"test:{customer.pk}", entered_at=at, variant=variant)


def met_at(enrollment):
    enrollment.refresh_from_db()
    return enrollment.goal_met_at


def trade(customer, at, product=None):
    return TradeFactory(customer=customer, traded_at=at, **({"product": product} if product else {}))


def test_first_trade_counts_the_first_trade_after_entry_within_the_window(journey_with, client_of):
    journey = journey_with({"type": "first_trade", "within_days": 14})
    early, inside, late, never = (client_of(i) for i in range(4))
    for c in (early, inside, late, never):
        trade(c, ENTRY - timedelta(days=3))  # traded before entry: does not count for anyone
    trade(early, ENTRY - timedelta(minutes=1))
    trade(inside, ENTRY + timedelta(days=2, hours=1))
    trade(inside, ENTRY + timedelta(days=5))
    trade(late, ENTRY + timedelta(days=14, minutes=1))  # one minute past the window
    rows = {c: enroll(journey, c) for c in (early, inside, late, never)}
    assert goals_measure(now=NOW)["first_trade"] == 1
    assert met_at(rows[inside]) == ENTRY + timedelta(days=2, hours=1)
    assert [met_at(rows[c]) for c in (early, late, never)] == [None, None, None]


def test_hold_out_clients_are_measured_too(journey_with, client_of):
    journey = journey_with({"type": "first_trade", "within_days": 30}, holdout_percent=50)
    customers = [client_of(i) for i in range(12)]
    entered = enroll_queryset(version=journey.live_version, trigger_key="manual:1", now=ENTRY,
                              customers=Customer.objects.filter(pk__in=[c.pk for c in customers]))
    assert entered == 12
    held = [c for c in customers if in_holdout(journey.pk, c.pk, 50)]
    treated = [c for c in customers if c not in held]
    assert held and treated  # 12 clients at 50 %: both groups exist
    for c in held[:1] + treated[:2]:
        trade(c, ENTRY + timedelta(days=3))
    goals_measure(now=NOW)
    rows = Enrollment.objects.filter(journey=journey)
    assert rows.filter(status="holdout", goal_met_at__isnull=False).count() == 1
    assert rows.filter(status="holdout").count() == len(held)
    assert rows.exclude(status="holdout").filter(goal_met_at__isnull=False).count() == 2

    summary = goal_summary(journey, now=NOW)
    assert summary["goal"] == {"type": "first_trade", "label": "首笔交易", "within_days": 30}
    assert summary["treatment"]["enrolled"] == len(treated) and summary["treatment"]["met"] == 2
    assert summary["holdout"] == {"enrolled": len(held), "met": 1, "pending": len(held) - 1, "rate": 1 / len(held)}
    assert summary["uplift"] == pytest.approx(2 / len(treated) - 1 / len(held))


def test_the_window_is_measured_as_of_now_and_a_met_goal_keeps_its_first_time(journey_with, client_of):
    journey = journey_with({"type": "first_trade", "within_days": 14})
    customer = client_of()
    row = enroll(journey, customer)
    trade(customer, ENTRY + timedelta(days=4))
    assert goals_measure(now=ENTRY + timedelta(days=3))["first_trade"] == 0  # not yet happened as of then
    assert met_at(row) is None
    goals_measure(now=ENTRY + timedelta(days=5))
    assert met_at(row) == ENTRY + timedelta(days=4)
    trade(customer, ENTRY + timedelta(days=1))  # a late-arriving earlier trade does not rewrite the record
    assert goals_measure(now=NOW)["first_trade"] == 0
    assert met_at(row) == ENTRY + timedelta(days=4)


def test_margin_opened_needs_a_margin_trade(journey_with, client_of):
    journey = journey_with({"type": "margin_opened", "within_days": 30})
    margin = ProductFactory(code="MARGIN01", name="融资融券·融资买入", type="margin", risk_level="R4")
    stock = ProductFactory(code="SH600036", name="招商银行", type="stock", risk_level="R3")
    a, b = client_of(1), client_of(2)
    trade(a, ENTRY + timedelta(days=1), stock)
    trade(a, ENTRY + timedelta(days=6), margin)
    trade(b, ENTRY + timedelta(days=1), stock)
    ra, rb = enroll(journey, a), enroll(journey, b)
    assert goals_measure(now=NOW)["margin_opened"] == 1
    assert (met_at(ra), met_at(rb)) == (ENTRY + timedelta(days=6), None)


def test_tag_goal_counts_the_tag_added_after_entry(journey_with, client_of):
    from tagging.models import CustomerTagHistory, Tag

    journey = journey_with({"type": "tag", "tag": "margin_intent", "within_days": 14})
    tag, other = Tag.objects.get(code="margin_intent"), Tag.objects.get(code="fund_interest")
    before, after, removed, wrong_tag = (client_of(i) for i in range(4))
    rows = {c: enroll(journey, c) for c in (before, after, removed, wrong_tag)}
    history = [(before, tag, "added", ENTRY - timedelta(hours=1)), (after, tag, "added", ENTRY + timedelta(days=2)),
               (removed, tag, "removed", ENTRY + timedelta(days=2)), (wrong_tag, other, "added", ENTRY + timedelta(days=2))]
    for customer, t, action, at in history:
        CustomerTagHistory.objects.create(customer=customer, tag=t, action=action, source="manual", actor_label="t",
                                          at=at)
    assert goals_measure(now=NOW)["tag"] == 1
    assert met_at(rows[after]) == ENTRY + timedelta(days=2)
    assert [met_at(rows[c]) for c in (before, removed, wrong_tag)] == [None, None, None]


def test_funded_counts_a_stage_change_after_entry_of_a_client_who_had_not_traded(journey_with, client_of):
    journey = journey_with({"type": "funded", "within_days": 7})
    new, already, traded_before, not_yet = (client_of(i, funnel_stage="opened") for i in range(4))
    rows = {c: enroll(journey, c) for c in (new, already, traded_before, not_yet)}
    Customer.objects.filter(pk__in=[new.pk, traded_before.pk]).update(funnel_stage="funded",
                                                                      updated_at=ENTRY + timedelta(days=2))
    Customer.objects.filter(pk=already.pk).update(funnel_stage="funded", updated_at=ENTRY - timedelta(days=1))
    trade(traded_before, ENTRY - timedelta(days=20))
    Customer.objects.filter(pk=not_yet.pk).update(updated_at=ENTRY + timedelta(days=2))  # another change, still opened
    assert goals_measure(now=ENTRY + timedelta(days=8))["funded"] == 1
    assert met_at(rows[new]) == ENTRY + timedelta(days=2)
    assert [met_at(rows[c]) for c in (already, traded_before, not_yet)] == [None, None, None]


def test_account_opened_counts_an_opening_on_or_after_the_entry_day(journey_with, client_of):
    journey = journey_with({"type": "account_opened", "within_days": 7})
    entry_day = timezone.localdate(ENTRY)
    customers = [client_of(i, funnel_stage="id_uploaded", opened_at=None) for i in range(4)]
    opened, funded, opened_before, too_late = customers
    rows = {c: enroll(journey, c) for c in customers}
    changes = [(opened, "opened", entry_day + timedelta(days=1), ENTRY + timedelta(days=1, hours=2)),
               (funded, "funded", entry_day + timedelta(days=2), ENTRY + timedelta(days=4)),  # opened, then funded
               (opened_before, "opened", entry_day - timedelta(days=1), ENTRY + timedelta(days=1)),
               (too_late, "opened", entry_day + timedelta(days=9), ENTRY + timedelta(days=9))]
    for customer, stage, opened_at, changed in changes:
        Customer.objects.filter(pk=customer.pk).update(funnel_stage=stage, opened_at=opened_at, updated_at=changed)
    assert goals_measure(now=ENTRY + timedelta(days=10))["account_opened"] == 2
    assert met_at(rows[opened]) == ENTRY + timedelta(days=1, hours=2)
    end_of_opening_day = timezone.make_aware(timezone.datetime(2026, 11, 13, 0, 0))  # opened 11-12, so by midnight
    assert met_at(rows[funded]) == end_of_opening_day  # the latest moment the opening can have happened
    assert (met_at(rows[opened_before]), met_at(rows[too_late])) == (None, None)


def test_summary_splits_treatment_hold_out_and_variants(journey_with, client_of):
    journey = journey_with({"type": "first_trade", "within_days": 30}, holdout_percent=10)
    people = [client_of(i) for i in range(9)]
    plan = [("active", "A", True), ("active", "A", False), ("completed", "A", True), ("active", "B", False),
            ("completed", "B", False), ("completed", "B", True), ("holdout", "", False), ("holdout", "", False),
            ("holdout", "", True)]
    for customer, (status, variant, trades) in zip(people, plan, strict=True):
        enroll(journey, customer, status=status, variant=variant)
        if trades:
            trade(customer, ENTRY + timedelta(days=2))
    goals_measure(now=ENTRY + timedelta(days=10))
    summary = goal_summary(journey, now=ENTRY + timedelta(days=10))
    assert summary["treatment"] == {"enrolled": 6, "met": 3, "pending": 3, "rate": 0.5}
    assert summary["holdout"]["met"] == 1 and summary["holdout"]["enrolled"] == 3
    assert summary["uplift"] == pytest.approx(0.5 - 1 / 3)
    assert summary["uplift_relative"] == pytest.approx((0.5 - 1 / 3) / (1 / 3))
    assert summary["variants"]["A"] == {"enrolled": 3, "met": 2, "pending": 1, "rate": 2 / 3}
    assert summary["variants"]["B"]["met"] == 1
    after_window = goal_summary(journey, now=ENTRY + timedelta(days=31))
    assert after_window["treatment"]["pending"] == 0


def test_a_journey_without_hold_out_has_no_uplift(journey_with, client_of):
    journey = journey_with({"type": "first_trade", "within_days": 14})
    enroll(journey, client_of())
    summary = goal_summary(journey, now=NOW)
    assert summary["holdout"]["rate"] is None and summary["uplift"] is None


def test_goals_are_measured_on_beat_every_five_minutes():
    from scrm.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["sop.goals_measure"]
    assert entry == {"task": "sop.goals_measure", "schedule": 300.0}
    app.loader.import_default_modules()
    assert "sop.goals_measure" in app.tasks


def test_no_goal_types_without_a_measure():
    from sop.definition import GOALS
    from sop.goals import HIT_SQL

    assert set(GOALS) - {"none"} == set(HIT_SQL)
