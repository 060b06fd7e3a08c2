from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import BehaviourEvent
from customers.tests.factories import CustomerFactory
from tagging.models import CustomerTag, CustomerTagHistory, Tag, TagRule
from tagging.rule_tags import customer_tags_bulk_set, tag_rule_apply, tag_rule_preview, tags_expire

pytestmark = pytest.mark.django_db

RULE = {"op": "and", "rules": [
    {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7},
    {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365, "product_type": "fund"},
]}


def _views(customer, n, days_ago=1):
    for i in range(n):
        BehaviourEvent.objects.create(event_id=f"ev-{customer.pk}-{i}-{days_ago}", customer=customer,
                                      type="fund_page_view", occurred_at=timezone.now() - timedelta(days=days_ago))


def test_rule_tags_matching_customers_with_evidence_and_history_and_is_idempotent(advisor):
    keen, cold = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
    _views(keen, 3)
    tag = Tag.objects.get(code="fund_interest")
    rule = TagRule.objects.create(tag=tag, rule=RULE, enabled=True)
    assert tag_rule_preview(rule=RULE) == 1
    assert tag_rule_apply(tag_rule=rule) == {"matched": 1, "added": 1, "removed": 0}
    row = CustomerTag.objects.get()
    assert row.customer == keen and row.source == "rule" and "fund_page_view" in row.evidence
    assert row.expires_at is not None  # fund_interest has a 30-day default TTL
    assert tag_rule_apply(tag_rule=rule)["added"] == 0
    assert CustomerTagHistory.objects.filter(action="added").count() == 1
    # keen no longer matches once the views age out: the rule tag is removed, history keeps both
    BehaviourEvent.objects.filter(customer=keen).update(occurred_at=timezone.now() - timedelta(days=20))
    _views(cold, 4)
    result = tag_rule_apply(tag_rule=rule)
    assert result == {"matched": 1, "added": 1, "removed": 1}
    assert list(CustomerTag.objects.values_list("customer", flat=True)) == [cold.pk]
    assert list(CustomerTagHistory.objects.filter(customer=keen).values_list("action", flat=True)
                .order_by("at", "id")) == ["added", "removed"]


def test_incremental_apply_touches_only_given_customers(advisor):
    a, b = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
    _views(a, 3)
    _views(b, 3)
    rule = TagRule.objects.create(tag=Tag.objects.get(code="fund_interest"), rule=RULE, enabled=True)
    assert tag_rule_apply(tag_rule=rule, customer_ids=[a.pk])["added"] == 1
    assert list(CustomerTag.objects.values_list("customer", flat=True)) == [a.pk]


def test_bulk_set_respects_exclusive_groups_and_expiry_moves_to_history(advisor):
    customers = [CustomerFactory(advisor=advisor) for _ in range(3)]
    ids = [c.pk for c in customers]
    morning, evening = Tag.objects.get(code="contact_morning"), Tag.objects.get(code="contact_evening")
    assert customer_tags_bulk_set(customer_ids=ids, tag=morning, add=True, actor=advisor) == 3
    customer_tags_bulk_set(customer_ids=ids[:1], tag=evening, add=True, actor=advisor)
    assert set(CustomerTag.objects.filter(customer=customers[0]).values_list("tag__code", flat=True)) == {
        "contact_evening"}
    assert customer_tags_bulk_set(customer_ids=ids, tag=morning, add=False, actor=advisor) == 2
    margin = Tag.objects.get(code="margin_intent")
    customer_tags_bulk_set(customer_ids=ids[:2], tag=margin, add=True, actor=advisor)
    CustomerTag.objects.filter(tag=margin, customer=customers[0]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert CustomerTag.objects.current().filter(tag=margin).count() == 1
    assert tags_expire() == 1
    assert CustomerTagHistory.objects.filter(tag=margin, action="expired", customer=customers[0]).exists()


def test_bulk_and_rule_tagging_notify_the_tag_hooks_like_single_tagging(advisor, django_capture_on_commit_callbacks):
    from core.events import TagChanged, subscribe, unsubscribe

    seen = []

    def hear(event):
        seen.append((event.customer_id, event.tag_code, event.action, event.source))

    subscribe(TagChanged, hear)
    try:
        a, b = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
        with django_capture_on_commit_callbacks(execute=True):
            customer_tags_bulk_set(customer_ids=[a.pk, b.pk], tag=Tag.objects.get(code="idle_funds"), add=True,
                                   actor=advisor)
        assert sorted(seen) == sorted([(a.pk, "idle_funds", "added", "manual"), (b.pk, "idle_funds", "added", "manual")])
        seen.clear()
        _views(a, 3)
        rule = TagRule.objects.create(tag=Tag.objects.get(code="fund_interest"), rule=RULE, enabled=True)
        with django_capture_on_commit_callbacks(execute=True):
            tag_rule_apply(tag_rule=rule)
        assert seen == [(a.pk, "fund_interest", "added", "rule")]
    finally:
        unsubscribe(TagChanged, hear)
