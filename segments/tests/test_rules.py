from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import BehaviourEvent
from customers.tests.factories import CustomerFactory, ProductFactory, TradeFactory
from segments.rules import RuleError, rule_queryset, rule_validate

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("rule, path", [
    ([], "$"),
    ({"op": "and", "rules": []}, "$.rules"),
    ({"op": "xor", "rules": [{}]}, "$.op"),
    ({"op": "and", "rules": [{"type": "attribute", "field": "nope", "op": "eq", "value": "x"}]}, "$.rules[0].field"),
    ({"op": "or", "rules": [{"type": "tier", "op": "in", "value": ["a"]},
                            {"type": "events", "event_type": "x", "op": "gte", "value": 3}]}, "$.rules[1].within_days"),
    ({"op": "and", "rules": [{"type": "trades", "measure": "count", "op": "gte", "value": "many", "within_days": 7}]},
     "$.rules[0].value"),
    ({"type": "attribute", "field": "total_assets", "op": "in", "value": ["1"]}, "$.op"),
    # a risk level no customer can have (a typo) would match nobody without a word
    ({"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C9"]}]},
     "$.rules[0].value"),
    ({"type": "attribute", "field": "gender", "op": "eq", "value": "X"}, "$.value"),
])
def test_invalid_rules_name_the_bad_node(rule, path):
    with pytest.raises(RuleError) as err:
        rule_validate(rule)
    assert err.value.path == path


def test_fund_intent_rule_over_events_and_trades(advisor):
    now = timezone.now()
    fund = ProductFactory(code="F1", type="fund")
    keen, holder, cold = (CustomerFactory(advisor=advisor) for _ in range(3))
    for customer in (keen, holder):
        for i in range(3):
            BehaviourEvent.objects.create(event_id=f"e-{customer.pk}-{i}", customer=customer, type="fund_page_view",
                                          occurred_at=now - timedelta(days=i + 1))
    BehaviourEvent.objects.create(event_id="old", customer=cold, type="fund_page_view",
                                  occurred_at=now - timedelta(days=30))
    TradeFactory(customer=holder, product=fund, traded_at=now - timedelta(days=10))
    rule = {"op": "and", "rules": [
        {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7},
        {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365, "product_type": "fund"},
    ]}
    assert list(rule_queryset(rule)) == [keen]


def test_attribute_amount_and_not(advisor, other_branch_advisor):
    rich = CustomerFactory(advisor=advisor, total_assets=Decimal("2000000"), risk_level="C4")
    CustomerFactory(advisor=advisor, total_assets=Decimal("500"), risk_level="C4")
    other = CustomerFactory(advisor=other_branch_advisor, total_assets=Decimal("3000000"), risk_level="C1")
    TradeFactory(customer=other, traded_at=timezone.now(), amount=Decimal("60000"))
    rule = {"op": "or", "rules": [
        {"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000, "not": False},
        {"type": "trades", "measure": "amount", "op": "gt", "value": 50000, "within_days": 30},
    ]}
    assert set(rule_queryset(rule)) == {rich, other}
    assert set(rule_queryset(rule, principal=advisor)) == {rich}
    negated = {**rule, "not": True}
    assert rich not in set(rule_queryset(negated))


@pytest.mark.parametrize("node, path", [
    ({"type": "attribute", "field": "age", "op": "gte", "value": 10**9}, "$.rules[0].value"),
    ({"type": "attribute", "field": "age", "op": "between", "value": [20, 1000]}, "$.rules[0].value[1]"),
    ({"type": "attribute", "field": "age", "op": "lt", "value": -1}, "$.rules[0].value"),
    ({"type": "attribute", "field": "opened_days_ago", "op": "lte", "value": 10**7}, "$.rules[0].value"),
    ({"type": "attribute", "field": "total_assets", "op": "gte", "value": "1e99999"}, "$.rules[0].value"),
    ({"type": "attribute", "field": "total_assets", "op": "gte", "value": "NaN"}, "$.rules[0].value"),
    ({"type": "attribute", "field": "total_assets", "op": "between", "value": [0, "Infinity"]}, "$.rules[0].value[1]"),
    ({"type": "trades", "measure": "amount", "op": "gte", "value": 10**20, "within_days": 7}, "$.rules[0].value"),
    ({"type": "attribute", "field": "region", "op": "eq", "value": "北\x00京"}, "$.rules[0].value"),
    ({"type": "events", "event_type": "x", "op": "gte", "value": 1, "within_days": 7, "properties": {"a\x00": "b"}},
     "$.rules[0].properties"),
])
def test_values_the_database_cannot_take_are_refused_when_validated(node, path):
    """Bounded here, so a saved segment can never fail its rebuild on a value (a year before 1, a NUL, …)."""
    rule = {"op": "and", "rules": [node]}
    with pytest.raises(RuleError) as err:
        rule_validate(rule)
    assert err.value.path == path


def test_bounds_still_let_real_ages_and_days_through(advisor):
    from datetime import date

    old = CustomerFactory(advisor=advisor, birth_date=date(1900, 1, 1), opened_at=date(1930, 1, 1))
    assert list(rule_queryset({"op": "and", "rules": [
        {"type": "attribute", "field": "age", "op": "between", "value": [100, 150]},
        {"type": "attribute", "field": "opened_days_ago", "op": "gte", "value": 30000}]})) == [old]


def test_trade_rule_of_a_product_type_reads_the_products_by_id_and_a_type_without_products_still_rebuilds(advisor):
    """A trade window on a product type names the type's product ids (the covering index's ranges); a type
    without any product matches nobody — and a saved segment with it still rebuilds (its SQL is valid)."""
    from segments.models import Segment
    from segments.rules import rule_sql
    from segments.services import segment_rebuild

    now = timezone.now()
    fund = ProductFactory(code="F9", type="fund")
    buyer, idle = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
    TradeFactory(customer=buyer, product=fund, traded_at=now - timedelta(days=3), external_id="T-f9")
    funds = {"type": "trades", "measure": "count", "op": "gte", "value": 1, "within_days": 30, "product_type": "fund"}
    bonds = {**funds, "product_type": "bond"}
    sql, params = rule_sql(funds, now=now)
    assert "customers_product" not in sql and fund.pk in params
    assert list(rule_queryset(funds)) == [buyer]
    assert not rule_queryset(bonds).exists()
    assert set(rule_queryset({**bonds, "op": "eq", "value": 0})) == {buyer, idle}
    segment = Segment.objects.create(name="债券交易", rule=bonds)
    assert segment_rebuild(segment_id=segment.pk).status == "done"
    segment.refresh_from_db()
    assert segment.member_count == 0
