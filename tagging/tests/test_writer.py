"""The one tag writer: every source — single, bulk, rule, churn — gets the same expiry rule, exclusive groups,
history vocabulary and events."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.events import TagChanged, listening
from customers.tests.factories import CustomerFactory
from tagging.models import CustomerTag, CustomerTagHistory, Tag
from tagging.rule_tags import customer_tags_bulk_set
from tagging.services import customer_tag_add
from tagging.writer import customer_tags_set

pytestmark = pytest.mark.django_db


def _history(customer, tag):
    return list(CustomerTagHistory.objects.filter(customer=customer, tag=tag).order_by("at", "id")
                .values_list("action", "source"))


def test_a_bulk_add_over_an_expired_unswept_tag_adds_it_again_with_history(advisor, django_capture_on_commit_callbacks):
    tag = Tag.objects.get(code="idle_funds")
    customer = CustomerFactory(advisor=advisor)
    customer_tag_add(customer=customer, tag=tag, source="manual", actor=advisor, expires_at=timezone.now() + timedelta(hours=1))
    CustomerTag.objects.filter(customer=customer, tag=tag).update(expires_at=timezone.now() - timedelta(minutes=1))
    with listening(TagChanged) as heard, django_capture_on_commit_callbacks(execute=True):
        changed = customer_tags_bulk_set(customer_ids=[customer.pk], tag=tag, add=True, actor=advisor)
    assert changed == 1
    row = CustomerTag.objects.get(customer=customer, tag=tag)
    assert row.expires_at is None or row.expires_at > timezone.now()
    assert _history(customer, tag) == [("added", "manual"), ("expired", "manual"), ("added", "manual")]
    assert [(e.customer_id, e.action) for e in heard] == [(customer.pk, "added")]


def test_exclusive_groups_and_history_are_the_same_for_single_bulk_and_rule_writers(advisor):
    grouped = list(Tag.objects.exclude(exclusive_group="").order_by("exclusive_group", "code")[:2])
    assert len(grouped) == 2 and grouped[0].exclusive_group == grouped[1].exclusive_group, "needs a seeded group"
    first, second = grouped
    a, b = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
    customer_tag_add(customer=a, tag=first, source="manual", actor=advisor)
    customer_tags_set(tag=first, source="rule", actor="规则", customer_ids=[b.pk])
    customer_tags_bulk_set(customer_ids=[a.pk, b.pk], tag=second, add=True, actor=advisor)
    for customer in (a, b):
        assert set(CustomerTag.objects.filter(customer=customer).values_list("tag__code", flat=True)) == {second.code}
        removed = CustomerTagHistory.objects.get(customer=customer, tag=first, action="removed")
        assert removed.evidence == f"互斥：由「{second.name}」替换"


def test_a_rule_never_overrides_or_removes_a_tag_set_by_hand(advisor):
    tag = Tag.objects.get(code="idle_funds")
    customer = CustomerFactory(advisor=advisor)
    customer_tag_add(customer=customer, tag=tag, source="manual", actor=advisor, evidence="客户说有闲钱")
    customer_tags_set(tag=tag, source="rule", actor="规则", customer_ids=[customer.pk], overwrite=False, evidence="规则")
    customer_tags_set(tag=tag, source="rule", actor="规则", add=False, customer_ids=[customer.pk], only_source="rule")
    row = CustomerTag.objects.get(customer=customer, tag=tag)
    assert (row.source, row.evidence) == ("manual", "客户说有闲钱")
    assert _history(customer, tag) == [("added", "manual")]


def test_churn_tagging_writes_history_with_each_clients_reasons(advisor):
    from dashboards.churn import _tag_sync, churn_tag
    from dashboards.models import ChurnScore

    tag = churn_tag()
    customer = CustomerFactory(advisor=advisor)
    reasons = [{"label": "资产较 90 天前下降 40%"}]
    ChurnScore.objects.create(customer=customer, score=82, level="high", reasons=reasons, computed_at=timezone.now())
    assert _tag_sync(tag=tag) == {"tag_added": 1, "tag_removed": 0}
    row = CustomerTag.objects.get(customer=customer, tag=tag)
    assert row.source == "rule" and "资产较 90 天前下降 40%" in row.evidence and row.evidence_data["score"] == 82
    ChurnScore.objects.filter(customer=customer).update(score=90, reasons=[{"label": "连续 60 天无交易"}])
    assert _tag_sync(tag=tag) == {"tag_added": 0, "tag_removed": 0}
    ChurnScore.objects.filter(customer=customer).update(level="low")
    assert _tag_sync(tag=tag) == {"tag_added": 0, "tag_removed": 1}
    assert _history(customer, tag) == [("added", "rule"), ("updated", "rule"), ("removed", "rule")]
    assert "连续 60 天无交易" in CustomerTagHistory.objects.get(customer=customer, tag=tag, action="updated").evidence
