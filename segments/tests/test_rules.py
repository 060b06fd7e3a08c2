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
