"""The segment, group and tier_change conditions; strict keys; rule tags share the one compiler."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from groups.models import GroupChat, GroupMember
from segments.models import Segment, SegmentMember
from segments.rules import RuleError, rule_queryset, rule_validate
from tagging.models import CustomerTag, CustomerTierHistory, Tag, TagRule, TierRun, TierScheme

pytestmark = pytest.mark.django_db


def one(node):
    return {"op": "and", "rules": [node]}


@pytest.mark.parametrize("node, path", [
    ({"type": "segment", "op": "in"}, "$.rules[0].segment"),
    ({"type": "segment", "op": "in", "segment": True}, "$.rules[0].segment"),
    ({"type": "segment", "op": "in", "segment": 999999}, "$.rules[0].segment"),
    ({"type": "segment", "op": "has", "segment": 1}, "$.rules[0].op"),
    ({"type": "group", "op": "in"}, "$.rules[0].op"),
    ({"type": "group", "op": "member", "purpose": "party"}, "$.rules[0].purpose"),
    ({"type": "group", "op": "member", "group": ""}, "$.rules[0].group"),
    ({"type": "tier_change", "direction": "sideways", "within_days": 3}, "$.rules[0].direction"),
    ({"type": "tier_change", "direction": "down"}, "$.rules[0].within_days"),
    ({"type": "tier_change", "direction": "down", "within_days": 3, "to": []}, "$.rules[0].to"),
    ({"type": "tag", "op": "has", "tag": "x", "withinDays": 3}, "$.rules[0].withinDays"),
    ({"type": ["tag"], "op": "has"}, "$.rules[0].type"),
    ({"type": "attribute", "field": ["risk_level"], "op": "eq", "value": "C1"}, "$.rules[0].field"),
    ({"type": "attribute", "field": "risk_level", "op": ["eq"], "value": "C1"}, "$.rules[0].op"),
    ({"type": "tag", "op": "has", "tag": ["x"]}, "$.rules[0].tag"),
    ({"type": "trades", "measure": "count", "op": {}, "value": 1, "within_days": 3}, "$.rules[0].op"),
])
def test_new_conditions_are_validated_with_the_path(node, path):
    with pytest.raises(RuleError) as err:
        rule_validate(one(node))
    assert err.value.path == path
    assert err.value.details == [{"path": path, "message": err.value.details[0]["message"]}]


def test_archived_segments_cannot_be_referenced():
    segment = Segment.objects.create(name="旧", rule=one({"type": "tier", "op": "in", "value": ["x"]}), archived=True)
    with pytest.raises(RuleError, match="已归档"):
        rule_validate(one({"type": "segment", "op": "in", "segment": segment.pk}))


def test_segment_and_group_conditions(advisor):
    a, b, c = (CustomerFactory(advisor=advisor) for _ in range(3))
    segment = Segment.objects.create(name="嵌套", rule=one({"type": "tier", "op": "in", "value": ["x"]}))
    SegmentMember.objects.create(segment=segment, customer=a)
    assert list(rule_queryset(one({"type": "segment", "op": "in", "segment": segment.pk}))) == [a]
    assert set(rule_queryset(one({"type": "segment", "op": "not_in", "segment": segment.pk}))) == {b, c}

    fund = GroupChat.objects.create(chat_id="wr-fund", name="基金群", purpose="fund", owner_userid="o")
    vip = GroupChat.objects.create(chat_id="wr-vip", name="VIP", purpose="vip", owner_userid="o")
    GroupMember.objects.create(group=fund, userid="wm-a", customer=a)
    GroupMember.objects.create(group=vip, userid="wm-b", customer=b, left_at=timezone.now())  # left: not a member
    GroupMember.objects.create(group=vip, userid="wm-c", customer=c)
    assert set(rule_queryset(one({"type": "group", "op": "member"}))) == {a, c}
    assert list(rule_queryset(one({"type": "group", "op": "member", "purpose": "fund"}))) == [a]
    assert list(rule_queryset(one({"type": "group", "op": "member", "group": "wr-vip"}))) == [c]
    assert list(rule_queryset(one({"type": "group", "op": "not_member"}))) == [b]


def test_tier_change_direction_by_rank(advisor):
    fell, rose, first, old = (CustomerFactory(advisor=advisor) for _ in range(4))
    scheme = TierScheme.objects.get(active=True)
    run = TierRun.objects.create(scheme=scheme, as_of=timezone.localdate(), window_days=365, method="mean")
    now = timezone.now()
    CustomerTierHistory.objects.create(customer=fell, run=run, from_code="important_value", to_code="general_retain",
                                       at=now - timedelta(days=2))
    CustomerTierHistory.objects.create(customer=rose, run=run, from_code="general_retain", to_code="important_value",
                                       at=now - timedelta(days=2))
    CustomerTierHistory.objects.create(customer=first, run=run, from_code="", to_code="no_trade",
                                       at=now - timedelta(days=2))
    CustomerTierHistory.objects.create(customer=old, run=run, from_code="important_value", to_code="no_trade",
                                       at=now - timedelta(days=60))
    node = {"type": "tier_change", "within_days": 30}
    assert list(rule_queryset(one({**node, "direction": "down"}))) == [fell]
    assert list(rule_queryset(one({**node, "direction": "up"}))) == [rose]
    assert set(rule_queryset(one({**node, "direction": "any"}))) == {fell, rose, first}
    assert list(rule_queryset(one({**node, "direction": "any", "to": ["no_trade"]}))) == [first]
    assert set(rule_queryset(one({**node, "direction": "down", "within_days": 90}))) == {fell, old}


def test_is_wecom_contact_attribute(advisor):
    contact = CustomerFactory(advisor=advisor, wecom_external_userid="wm-x")
    stranger = CustomerFactory(advisor=advisor)
    rule = one({"type": "attribute", "field": "is_wecom_contact", "op": "is_true"})
    assert list(rule_queryset(rule)) == [contact]
    assert list(rule_queryset({**rule, "not": True})) == [stranger]


def test_rule_tags_go_through_the_segment_compiler(advisor, operator):
    """tagging/rule_tags.py has no compiler of its own: a segment-only condition works in a tag rule."""
    import segments.rules
    import tagging.rule_tags
    from tagging.rule_tags import tag_rule_apply

    assert tagging.rule_tags.rule_compile is segments.rules.rule_compile
    assert tagging.rule_tags.rule_validate is segments.rules.rule_validate
    member, other = CustomerFactory(advisor=advisor, total_assets=Decimal("9")), CustomerFactory(advisor=advisor)
    segment = Segment.objects.create(name="嵌套", rule=one({"type": "tier", "op": "in", "value": ["x"]}))
    SegmentMember.objects.create(segment=segment, customer=member)
    tag_rule = TagRule.objects.create(tag=Tag.objects.get(code="idle_funds"), enabled=True,
                                      rule=one({"type": "segment", "op": "in", "segment": segment.pk}))
    assert tag_rule_apply(tag_rule=tag_rule)["added"] == 1
    assert list(CustomerTag.objects.filter(tag__code="idle_funds").values_list("customer_id", flat=True)) == [member.pk]
    assert other.pk not in CustomerTag.objects.values_list("customer_id", flat=True)
