"""Every touch passes the guards; a blocked touch is recorded with its reason, never dropped."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer, Touch
from sop.engine import enroll_queryset
from sop.models import GuardPolicy, StepRun, Unsubscribe
from sop.tests.test_engine import NOON, drain

pytestmark = pytest.mark.django_db


def run_one(journey, customers, now=NOON):
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                    trigger_key=f"t{now.timestamp()}", now=now)
    drain(now)
    return {r.enrollment.customer_id: r for r in StepRun.objects.select_related("enrollment").filter(step_id="a")}


def test_suitability_blocks_products_above_the_clients_level_or_with_an_expired_assessment(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["fund_sms"].template_id}])
    c3 = client_of(1, risk_level="C3")
    c4 = client_of(2, risk_level="C4")
    c5_expired = client_of(3, risk_level="C5", risk_assessed_at=NOON.date() - timedelta(days=365 * 3))
    runs = run_one(journey, [c3, c4, c5_expired])
    assert (runs[c3.pk].status, runs[c3.pk].block_reason) == ("blocked", "suitability_level")
    assert (runs[c5_expired.pk].status, runs[c5_expired.pk].block_reason) == ("blocked", "suitability_expired")
    assert runs[c4.pk].status == "done"
    assert provider.state()["accepted"] == {"sms": 1}
    blocked = Touch.objects.get(customer=c3)
    assert blocked.status == "blocked" and "成长混合基金" in blocked.content  # visible to compliance, with the text


def test_unsubscribed_and_not_a_wecom_contact_are_blocked(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "wecom_message", "template": sop_kit["wecom"].template_id,
                                   "executor": "advisor"}])
    no_wecom = client_of(1)
    unsubscribed = client_of(2, wecom_external_userid="wm_unsub")
    fine = client_of(3, wecom_external_userid="wm_fine")
    Unsubscribe.objects.create(customer=unsubscribed, channel="wecom")
    runs = run_one(journey, [no_wecom, unsubscribed, fine])
    assert runs[no_wecom.pk].block_reason == "wecom_not_contact"
    assert runs[unsubscribed.pk].block_reason == "unsubscribed"
    assert runs[fine.pk].status == "done" and runs[fine.pk].outcome == "prepared"
    task = fine.tasks.get(source="sop_wecom")
    assert task.assignee == fine.advisor and runs[fine.pk].detail["text"].startswith(fine.name)
    assert Touch.objects.get(customer=fine).status == "queued"  # sent when the advisor confirms in WeCom


def test_wecom_allows_four_group_send_messages_per_natural_month_across_journeys(provider, sop_kit, client_of):
    GuardPolicy.objects.filter(pk=1).update(caps={})
    customer = client_of(1, wecom_external_userid="wm_1")
    start = timezone.make_aware(timezone.datetime(2026, 11, 2, 12, 0))
    for day in range(4):  # four messages from four journeys this month
        Touch.objects.create(customer=customer, channel="wecom", content="x", status="sent",
                             occurred_at=start + timedelta(days=day))
    journey = sop_kit["publish"]([{"id": "a", "type": "wecom_message", "template": sop_kit["wecom"].template_id,
                                   "executor": "advisor"}])
    assert run_one(journey, [customer])[customer.pk].block_reason == "wecom_monthly_limit"
    next_month = timezone.make_aware(timezone.datetime(2026, 12, 1, 12, 0))
    StepRun.objects.all().delete()
    assert run_one(journey, [customer], now=next_month)[customer.pk].status == "done"


def test_frequency_caps_count_touches_of_every_journey(provider, sop_kit, client_of):
    GuardPolicy.objects.filter(pk=1).update(caps={"sms": {"day": 1}})
    customer = client_of(1)
    Touch.objects.create(customer=customer, channel="sms", content="其他旅程的短信", status="sent", occurred_at=NOON)
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    assert run_one(journey, [customer])[customer.pk].block_reason == "frequency_cap"


def test_quiet_hours_defer_instead_of_dropping(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    customer = client_of(1)
    night = timezone.make_aware(timezone.datetime(2026, 11, 24, 22, 30))
    run = run_one(journey, [customer], now=night)[customer.pk]
    assert run.status == "due" and run.outcome == "deferred_quiet_hours"
    assert timezone.localtime(run.due_at).strftime("%m-%d %H:%M") == "11-25 08:00"
    assert provider.state()["accepted"] == {}
    drain(run.due_at)
    assert provider.state()["accepted"] == {"sms": 1}


def test_an_unapproved_template_never_goes_out(provider, sop_kit, client_of, operator):
    from sop.templates_lint import template_save

    template = sop_kit["sms"].template
    template_save(actor=operator, template=template, name=template.name, channel="sms", body="新版本{name}")  # pending
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": template.pk}])
    customer = client_of(1)
    run = run_one(journey, [customer])[customer.pk]
    assert run.status == "done"
    assert Touch.objects.get(customer=customer).content == f"{customer.name}您好，我是您的投顾{customer.advisor.display_name}。"
    assert run.detail["template_version"] == sop_kit["sms"].pk  # the approved version, not the pending one


def test_tasks_for_clients_without_an_advisor_are_blocked(provider, sop_kit, client_of):
    journey = sop_kit["publish"]([{"id": "a", "type": "task", "title": "回访", "due_hours": 4, "executor": "advisor"}])
    orphan = client_of(1)
    Customer.objects.filter(pk=orphan.pk).update(advisor=None)
    assert run_one(journey, [orphan])[orphan.pk].block_reason == "no_advisor"


def test_dry_run_counts_who_would_enter_and_what_each_guard_blocks(sop_kit, client_of):
    from sop.services import journey_dry_run

    definition = {"trigger": {"type": "manual"}, "start": "a",
                  "steps": [{"id": "a", "type": "sms", "template": sop_kit["fund_sms"].template_id}],
                  "entry_rule": {"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000}}
    client_of(1, risk_level="C4")
    client_of(2, risk_level="C2")
    client_of(3, risk_level="C2")
    client_of(4, risk_level="C5", total_assets=10)
    result = journey_dry_run(definition=definition, customers=Customer.objects.all())
    assert result["matching"] == 3 and result["would_enter"] == 3
    assert result["steps"] == [{"step": "a", "reaching": 3, "blocked": {"suitability_level": 2}, "would_send": 1,
                                "arms": None}]


def test_dry_run_follows_the_hold_out_and_each_arm_of_an_ab_split(sop_kit, client_of):
    from sop.engine import in_holdout
    from sop.services import journey_dry_run
    from sop.steps import ab_variant

    definition = {"trigger": {"type": "manual"}, "start": "split", "holdout_percent": 10, "steps": [
        {"id": "split", "type": "branch", "condition": {"kind": "ab", "percent_a": 50}, "then": "sms_a", "else": "task_b"},
        {"id": "sms_a", "type": "sms", "template": sop_kit["sms"].template_id, "next": "wait"},
        {"id": "task_b", "type": "task", "title": "B 组回访", "due_hours": 4, "next": "wait"},
        {"id": "wait", "type": "wait", "minutes": 60}]}
    customers = [client_of(i) for i in range(22)]
    Unsubscribe.objects.create(customer=customers[0], channel="sms")
    result = journey_dry_run(definition=definition, customers=Customer.objects.all())
    treated = [c for c in customers if not in_holdout(0, c.pk, 10)]
    arm_a = [c for c in treated if ab_variant(c.pk, "split", 50) == "A"]
    steps = {row["step"]: row for row in result["steps"]}
    assert result["would_enter"] + result["holdout"] == 22 and result["would_enter"] == len(treated)
    assert steps["split"]["arms"] == {"then": len(arm_a), "else": len(treated) - len(arm_a)}
    sms = steps["sms_a"]
    assert sms["reaching"] == len(arm_a) == sms["would_send"] + sum(sms["blocked"].values())
    assert sms["blocked"] == ({"unsubscribed": 1} if customers[0] in arm_a else {})
    assert steps["task_b"]["reaching"] == len(treated) - len(arm_a)
    assert steps["wait"]["reaching"] == len(treated)  # both arms meet again; blocked clients go on


def test_the_contact_way_welcome_answers_the_client_and_does_not_use_up_the_caps(provider, sop_kit, client_of):
    GuardPolicy.objects.filter(pk=1).update(caps={"wecom": {"day": 1}})
    customer = client_of(1, wecom_external_userid="wm_new")
    # the client scanned the advisor's 渠道活码: WeCom's add (bookkeeping) and the automatic welcome
    Touch.objects.create(customer=customer, channel="wecom", direction="in", content="客户添加了企业微信",
                         source="wecom_add", occurred_at=NOON - timedelta(minutes=5))
    for _ in range(4):  # even several welcomes (several advisors) use none of the monthly group-send quota
        Touch.objects.create(customer=customer, channel="wecom", content="欢迎！", source="wecom_welcome",
                             occurred_at=NOON - timedelta(minutes=4))
    journey = sop_kit["publish"]([{"id": "a", "type": "wecom_message", "template": sop_kit["wecom"].template_id,
                                   "executor": "advisor"}])
    run = run_one(journey, [customer])[customer.pk]
    assert (run.status, run.outcome) == ("done", "prepared")
    # a message the journey itself sent does count: a second journey that day is capped
    Touch.objects.filter(customer=customer, source="sop").update(status="sent")
    second = sop_kit["publish"]([{"id": "a", "type": "wecom_message", "template": sop_kit["wecom"].template_id,
                                  "executor": "advisor"}], name="第二个旅程")
    StepRun.objects.all().delete()
    assert run_one(second, [customer])[customer.pk].block_reason == "frequency_cap"
