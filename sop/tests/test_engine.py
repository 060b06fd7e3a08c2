"""The engine in-process (claim → execute → next step), against the real database and the provider
sandbox over HTTP. The multi-worker crash test is test_engine_workers.py."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer, Task, Touch
from sop.engine import claim_due, enroll_queryset, execute_batch
from sop.models import Enrollment, StepRun

pytestmark = pytest.mark.django_db

NOON = timezone.make_aware(timezone.datetime(2026, 11, 24, 12, 0))  # a Tuesday, outside quiet hours


def drain(now):
    executed = 0
    for batch in claim_due(now=now):
        executed += execute_batch(batch, now=now)["executed"]
    return executed


def test_a_journey_runs_its_steps_in_order_and_finishes(provider, sop_kit, client_of, advisor):
    journey = sop_kit["publish"]([
        {"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id, "next": "wait"},
        {"id": "wait", "type": "wait", "minutes": 60 * 24, "next": "call"},
        {"id": "call", "type": "task", "title": "电话回访新客户", "due_hours": 24, "executor": "advisor"},
    ])
    customers = [client_of(i) for i in range(3)]
    entered = enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                              trigger_key="manual:1", now=NOON)
    assert entered == 3
    assert drain(NOON) == 3  # the SMS step
    assert provider.state()["accepted"] == {"sms": 3}
    touch = Touch.objects.get(customer=customers[0])
    expected = f"{customers[0].name}您好，我是您的投顾{advisor.display_name}。"
    assert (touch.channel, touch.status, touch.content) == ("sms", "sent", expected)
    assert drain(NOON) == 3  # the wait step schedules "call" a day later
    assert drain(NOON + timedelta(hours=23)) == 0
    assert drain(NOON + timedelta(hours=24, minutes=1)) == 3
    assert Task.objects.filter(assignee=advisor, title="电话回访新客户", source="sop").count() == 3
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"completed"}


def test_the_same_trigger_enrolls_once_and_a_client_is_in_a_journey_once(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    customer = Customer.objects.filter(pk=client_of().pk)
    assert enroll_queryset(version=journey.live_version, customers=customer, trigger_key="k1", now=NOON) == 1
    assert enroll_queryset(version=journey.live_version, customers=customer, trigger_key="k1", now=NOON) == 0
    assert enroll_queryset(version=journey.live_version, customers=customer, trigger_key="k2", now=NOON) == 0  # still active
    drain(NOON)
    # finished: the client may enter again on a new trigger
    assert enroll_queryset(version=journey.live_version, customers=customer, trigger_key="k2", now=NOON) == 1


def test_a_duplicated_task_or_a_crash_after_sending_never_touches_twice(provider, sop_kit, client_of):
    from sop.providers import send_batch

    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    customer = client_of()
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=customer.pk), trigger_key="x",
                    now=NOON)
    [batch] = claim_due(now=NOON)
    run = StepRun.objects.get(pk=batch[0])
    # the worker sent the SMS and died before its transaction committed: the provider has the key …
    send_batch("sms", [{"idempotency_key": run.idempotency_key, "to": "13900000000", "content": "x"}])
    # … nothing committed, so after the claim timeout the step is claimed again and executed
    assert claim_due(now=NOON + timedelta(seconds=30)) == []  # a fresh claim is not stolen
    again = claim_due(now=NOON + timedelta(minutes=10))
    assert again == [batch]
    assert execute_batch(batch, now=NOON)["executed"] == 1
    assert execute_batch(batch, now=NOON)["executed"] == 0  # the duplicated task finds the step done
    state = provider.state()
    assert state["accepted"] == {"sms": 1} and state["duplicates"] == 1
    assert Touch.objects.filter(customer=customer).count() == 1
    run.refresh_from_db()
    assert run.status == "done" and run.detail["duplicate_resend"] is True


def test_provider_outage_retries_with_backoff_then_dead_letters(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=client_of().pk), trigger_key="x",
                    now=NOON)
    provider.fail_next = 100
    moment = NOON
    for attempt in range(1, 6):
        drain(moment)
        run = StepRun.objects.get()
        assert run.attempts == attempt and "暂时不可用" in run.error
        moment = run.due_at
    assert run.status == "dead"
    assert Touch.objects.count() == 0
    provider.fail_next = 0
    assert drain(moment + timedelta(days=1)) == 0  # a dead step stays dead until someone acts


def test_editing_a_live_journey_leaves_enrolled_clients_on_their_version(provider, sop_kit, client_of, operator):
    from sop.services import journey_draft_save, journey_publish

    journey = sop_kit["publish"]([
        {"id": "wait", "type": "wait", "minutes": 10, "next": "hello"},
        {"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id},
    ])
    first = client_of(1)
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=first.pk), trigger_key="a", now=NOON)
    drain(NOON)
    draft = {**journey.draft, "steps": [{"id": "wait", "type": "wait", "minutes": 10, "next": "call"},
                                        {"id": "call", "type": "task", "title": "新版：电话", "due_hours": 4}]}
    journey_draft_save(actor=operator, journey=journey, definition=draft)
    v2 = journey_publish(actor=operator, journey=journey)
    second = client_of(2)
    enroll_queryset(version=v2, customers=Customer.objects.filter(pk=second.pk), trigger_key="b", now=NOON)
    drain(NOON)
    drain(NOON + timedelta(minutes=11))
    assert Touch.objects.filter(customer=first, channel="sms").exists()  # v1 goes on to its SMS
    assert Task.objects.filter(customer=second, title="新版：电话").exists()
    assert not Touch.objects.filter(customer=second).exists()


def test_branches_on_a_rule_and_ab_split(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([
        {"id": "check", "type": "branch", "then": "rich", "else": "ab",
         "condition": {"kind": "rule", "rule": {"type": "attribute", "field": "total_assets", "op": "gte", "value": 500000}}},
        {"id": "rich", "type": "task", "title": "高净值客户", "due_hours": 4},
        {"id": "ab", "type": "branch", "then": "a", "else": "b", "condition": {"kind": "ab", "percent_a": 50}},
        {"id": "a", "type": "tag_add", "tag": "margin_intent"},
        {"id": "b", "type": "task", "title": "B 组", "due_hours": 4},
    ])
    rich = client_of(0, total_assets=900000)
    others = [client_of(i + 1, total_assets=1000) for i in range(40)]
    enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="x", now=NOON)
    while drain(NOON):
        pass
    assert Task.objects.filter(title="高净值客户").get().customer == rich
    variants = dict(Enrollment.objects.filter(customer__in=others).values_list("customer_id", "variant"))
    a = {cid for cid, v in variants.items() if v == "A"}
    assert 5 < len(a) < 35, "a 50/50 split of 40 clients"
    from tagging.models import CustomerTag

    assert set(CustomerTag.objects.filter(tag__code="margin_intent").values_list("customer_id", flat=True)) == a
    assert set(Task.objects.filter(title="B 组").values_list("customer_id", flat=True)) == set(variants) - a


def test_holdout_clients_get_no_steps_but_are_counted(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}],
                                 holdout_percent=30)
    for i in range(60):
        client_of(i)
    assert enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="x", now=NOON) == 60
    holdout = Enrollment.objects.filter(status="holdout")
    assert 5 < holdout.count() < 35
    from sop.engine import in_holdout

    assert all(in_holdout(journey.pk, cid, 30) for cid in holdout.values_list("customer_id", flat=True))
    drain(NOON)
    assert Touch.objects.filter(customer__sop_enrollments__status="holdout").count() == 0


def test_paused_journeys_wait_and_archived_ones_cancel(provider, sop_kit, client_of, operator):
    from sop.services import journey_set_status

    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=client_of().pk), trigger_key="x",
                    now=NOON)
    journey_set_status(actor=operator, journey=journey, status="paused")
    assert drain(NOON) == 0
    journey_set_status(actor=operator, journey=journey, status="live")
    journey_set_status(actor=operator, journey=journey, status="archived")
    assert StepRun.objects.get().status == "cancelled" and Enrollment.objects.get().status == "exited"


def test_the_has_tag_branch_and_the_segment_compiler_agree_on_an_expired_tag(sop_kit, client_of):
    from segments.rules import rule_compile
    from tagging.models import CustomerTag, Tag

    tag = Tag.objects.get(code="margin_intent")
    journey = sop_kit["publish"]([
        {"id": "has", "type": "branch", "condition": {"kind": "tag", "tag": "margin_intent"}, "then": "yes", "else": "no"},
        {"id": "yes", "type": "task", "title": "有两融意向", "due_hours": 4},
        {"id": "no", "type": "task", "title": "没有两融意向", "due_hours": 4}])
    current, expired = client_of(1), client_of(2)
    CustomerTag.objects.create(customer=current, tag=tag, source="manual", expires_at=NOON + timedelta(days=3))
    CustomerTag.objects.create(customer=expired, tag=tag, source="manual", expires_at=NOON - timedelta(hours=1))  # not swept
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[current.pk, expired.pk]),
                    trigger_key="t", now=NOON)
    drain(NOON)
    arms = dict(StepRun.objects.filter(step_id="has").values_list("enrollment__customer_id", "outcome"))
    compiled = set(Customer.objects.filter(rule_compile({"type": "tag", "op": "has", "tag": "margin_intent"}, now=NOON))
                   .values_list("pk", flat=True))
    assert arms == {current.pk: "then", expired.pk: "else"}
    assert compiled == {current.pk}


def test_the_replied_branch_does_not_take_wecoms_add_notice_for_a_reply(sop_kit, client_of):
    journey = sop_kit["publish"]([
        {"id": "replied", "type": "branch", "condition": {"kind": "replied", "within_hours": 144}, "then": "yes",
         "else": "no"},
        {"id": "yes", "type": "task", "title": "已回复", "due_hours": 4},
        {"id": "no", "type": "task", "title": "未回复", "due_hours": 4}])
    added_only, answered = client_of(1), client_of(2)
    for customer in (added_only, answered):
        Touch.objects.create(customer=customer, channel="wecom", direction="in", content="客户添加了企业微信",
                             source="wecom_add", occurred_at=NOON - timedelta(days=2))
    Touch.objects.create(customer=answered, channel="wecom", direction="in", content="谢谢老师", source="wecom_chat",
                         occurred_at=NOON - timedelta(days=1))
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[added_only.pk, answered.pk]),
                    trigger_key="t", now=NOON)
    drain(NOON)
    arms = dict(StepRun.objects.filter(step_id="replied").values_list("enrollment__customer_id", "outcome"))
    assert arms == {added_only.pk: "else", answered.pk: "then"}
