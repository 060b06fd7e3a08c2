"""The journey pages over HTTP: create → edit steps in the flow editor (valid, and invalid with the path shown
and nothing saved) → publish; results that match the rows the engine wrote; A/B and hold-out numbers; the
list's fixed query count; dead-letter retry; who may use the pages."""

import json
import math
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.models import AuditLog
from customers.models import Customer
from sop.engine import enroll_queryset
from sop.models import Enrollment, Journey, StepRun, Unsubscribe
from sop.selectors import journey_ab, journey_funnel, journey_holdout, two_proportion_p
from sop.tests.test_engine import NOON, drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def sop_kit(db, operator):
    """Approved templates (written directly: the template workflow has its own tests) and a publisher."""
    from sop.models import MessageTemplate, TemplateVersion
    from sop.services import journey_create, journey_publish

    def approved(name, channel, body):
        template = MessageTemplate.objects.create(name=name, channel=channel)
        return TemplateVersion.objects.create(template=template, number=1, body=body, status="approved")

    kit = {"sms": approved("欢迎短信", "sms", "{name}您好，我是您的投顾{advisor}。"),
           "wecom": approved("企微问候", "wecom", "{name}您好，有问题随时找我。")}

    def publish(steps, trigger=None, start=None, name="测试旅程", **extra):
        definition = {"trigger": trigger or {"type": "manual"}, "start": start or steps[0]["id"], "steps": steps, **extra}
        journey = journey_create(actor=operator, name=name, definition=definition)
        journey_publish(actor=operator, journey=journey)
        journey.refresh_from_db()
        return journey

    kit["publish"] = publish
    return kit


def _draft(journey):
    journey.refresh_from_db()
    return journey.draft


def _create(client, **extra):
    data = {"name": "两融意向培育", "description": "打上两融意向后跟进", "trigger_type": "tag_added", "tag": "margin_intent",
            **extra}
    response = client.post(reverse("sop:journey_create"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Journey.objects.get(name=data["name"])


def test_operator_creates_edits_in_the_flow_editor_and_publishes(client, operator, sop_kit):
    client.force_login(operator)
    assert "还没有旅程" in client.get(reverse("sop:list")).content.decode()
    journey = _create(client)
    assert journey.status == "draft" and journey.draft["trigger"] == {"type": "tag_added", "tag": "margin_intent"}
    assert AuditLog.objects.filter(action="sop.journey_created", target_id=str(journey.pk)).exists()
    page = client.get(reverse("sop:journey_edit", args=[journey.pk])).content.decode()
    assert "打上标签" in page and 'data-step-id="wait_1"' in page

    # add an SMS after the first wait: the answer is the whole editor, the draft has it linked in
    new_url = reverse("sop:journey_step_new", args=[journey.pk])
    response = client.post(new_url, {"after": "wait_1", "arm": "next", "type": "sms",
                                     "template": sop_kit["sms"].template_id, "executor": "system"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Retarget"] == "#journey-editor"
    assert 'data-step-id="sms_1"' in response.content.decode() and "欢迎短信" in response.content.decode()
    draft = _draft(journey)
    assert [s["id"] for s in draft["steps"]] == ["wait_1", "sms_1"] and draft["steps"][0]["next"] == "sms_1"

    # an A/B split at the start, then a task into its B arm
    response = client.post(new_url, {"after": "", "arm": "start", "type": "branch", "kind": "ab", "percent_a": 40})
    assert response.status_code == 200
    response = client.post(new_url, {"after": "branch_1", "arm": "else", "type": "task", "title": "B 组电话回访",
                                     "due_hours": 24, "executor": "advisor"})
    assert response.status_code == 200
    draft = _draft(journey)
    branch = next(s for s in draft["steps"] if s["id"] == "branch_1")
    assert draft["start"] == "branch_1" and branch["then"] == "wait_1" and branch["else"] == "task_1"
    page = response.content.decode()
    assert "A 组 40%" in page and "B 组 60%" in page and "B 组电话回访" in page

    # invalid: 100 days (more than 90); the validator's path is shown next to the step's field and nothing is saved
    before = _draft(journey)
    step_url = reverse("sop:journey_step", args=[journey.pk, "wait_1"])
    response = client.post(step_url, {"wait_mode": "minutes", "wait_value": 100, "wait_unit": "1440"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "$.steps[0].minutes" in body and "步骤 wait_1" in body and 'data-field="wait_value"' in body
    assert _draft(journey) == before
    # invalid: a template of another channel on an SMS step
    response = client.post(new_url, {"after": "sms_1", "arm": "next", "type": "sms",
                                     "template": sop_kit["wecom"].template_id, "executor": "system"})
    assert response.status_code == 400 and "$.steps[4].template" in response.content.decode()
    assert "与步骤不符" in response.content.decode() and _draft(journey) == before
    # a template without an approved version cannot be picked
    from sop.models import MessageTemplate, TemplateVersion

    pending = MessageTemplate.objects.create(name="未批准短信", channel="sms")
    TemplateVersion.objects.create(template=pending, number=1, body="x", status="pending")
    response = client.post(new_url, {"after": "sms_1", "arm": "next", "type": "sms", "template": pending.pk})
    assert response.status_code == 400 and "没有合规已批准的版本" in response.content.decode()
    assert _draft(journey) == before

    # valid edit: wait 2 hours
    response = client.post(step_url, {"wait_mode": "minutes", "wait_value": 2, "wait_unit": "60"})
    assert response.status_code == 200 and "等待 2 小时" in response.content.decode()
    assert next(s for s in _draft(journey)["steps"] if s["id"] == "wait_1")["minutes"] == 120

    # the raw JSON: a bad path is shown, nothing saved; a good one saves
    before = _draft(journey)
    bad = json.loads(json.dumps(before))
    bad["steps"][1]["template"] = 999999
    response = client.post(reverse("sop:journey_json", args=[journey.pk]), {"definition": json.dumps(bad)})
    assert response.status_code == 400 and "$.steps[1].template" in response.content.decode()
    assert "模板不存在" in response.content.decode() and _draft(journey) == before
    response = client.post(reverse("sop:journey_json", args=[journey.pk]), {"definition": "{not json"})
    assert response.status_code == 400 and _draft(journey) == before

    # settings: hold-out and goal
    response = client.post(reverse("sop:journey_settings", args=[journey.pk]),
                           {"name": "两融意向培育", "description": "", "entry": "", "goal_type": "margin_opened",
                            "goal_within_days": 14, "holdout_percent": 60})
    assert response.status_code == 400 and "$.holdout_percent" in response.content.decode()
    response = client.post(reverse("sop:journey_settings", args=[journey.pk]),
                           {"name": "两融意向培育", "description": "", "entry": "", "goal_type": "margin_opened",
                            "goal_within_days": 14, "holdout_percent": 10})
    assert response.status_code == 200
    assert _draft(journey)["goal"] == {"type": "margin_opened", "within_days": 14}
    assert _draft(journey)["holdout_percent"] == 10

    # the trigger: a segment trigger without its segment is refused with the path, then a valid one is saved
    trigger_url = reverse("sop:journey_trigger", args=[journey.pk])
    before = _draft(journey)
    response = client.post(trigger_url, {"trigger_type": "segment_entered"})
    assert response.status_code == 400 and "$.trigger.segment" in response.content.decode()
    assert 'data-field="segment"' in response.content.decode() and _draft(journey) == before
    response = client.post(trigger_url, {"trigger_type": "funnel_stalled", "stage": "video_verified", "hours": 48})
    assert response.status_code == 200 and "超过 48 小时" in response.content.decode()
    assert _draft(journey)["trigger"] == {"type": "funnel_stalled", "stage": "video_verified", "hours": 48}

    # delete the first wait: what pointed at it now points at the SMS
    response = client.post(reverse("sop:journey_step_delete", args=[journey.pk, "wait_1"]))
    assert response.status_code == 200
    draft = _draft(journey)
    assert "wait_1" not in [s["id"] for s in draft["steps"]]
    assert next(s for s in draft["steps"] if s["id"] == "branch_1")["then"] == "sms_1"

    # publish, pause, resume — audited by the services
    response = client.post(reverse("sop:journey_publish", args=[journey.pk]))
    assert response.status_code == 302
    journey.refresh_from_db()
    assert journey.status == "live" and journey.live_version.number == 1
    assert journey.live_version.definition == draft
    assert "发布新版本" in client.get(reverse("sop:journey_edit", args=[journey.pk])).content.decode()
    # editing a live journey edits the draft; the live version stays until 发布新版本
    response = client.post(reverse("sop:journey_step", args=[journey.pk, "task_1"]),
                           {"title": "B 组电话回访（新）", "due_hours": 12, "executor": "advisor"})
    assert response.status_code == 200 and "草稿与线上版本不同" in response.content.decode()
    journey.refresh_from_db()
    assert journey.live_version.definition == draft and journey.draft != draft
    client.post(reverse("sop:journey_publish", args=[journey.pk]))
    journey.refresh_from_db()
    assert journey.live_version.number == 2 and journey.versions.count() == 2
    draft = journey.draft
    for status in ("paused", "live"):
        client.post(reverse("sop:journey_status", args=[journey.pk]), {"status": status})
        journey.refresh_from_db()
        assert journey.status == status
    assert set(AuditLog.objects.filter(target_id=str(journey.pk)).values_list("action", flat=True)) >= {
        "sop.journey_published", "sop.journey_paused", "sop.journey_live"}
    listing = client.get(reverse("sop:list")).content.decode()
    assert "两融意向培育" in listing and "运行中" in listing and "v2" in listing

    # archived: read-only, the pending steps of enrolled clients are cancelled by the service
    client.post(reverse("sop:journey_status", args=[journey.pk]), {"status": "archived"})
    journey.refresh_from_db()
    assert journey.status == "archived"
    sms_url = reverse("sop:journey_step", args=[journey.pk, "sms_1"])
    assert client.get(sms_url).status_code == 200  # still readable
    assert client.post(sms_url, {"template": sop_kit["sms"].template_id, "executor": "advisor"}).status_code == 404
    assert client.post(new_url, {"after": "", "arm": "start", "type": "wait"}).status_code == 404
    assert _draft(journey) == draft


def test_results_count_what_the_engine_did(client, operator, provider, sop_kit, client_of):
    journey = sop_kit["publish"]([
        {"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id, "next": "wait"},
        {"id": "wait", "type": "wait", "minutes": 60, "next": "call"},
        {"id": "call", "type": "task", "title": "电话回访", "due_hours": 24, "executor": "advisor"},
    ], goal={"type": "first_trade", "within_days": 14})
    customers = [client_of(i) for i in range(6)]
    bad_number = client_of(50, mobile="12345")  # the provider refuses it: a dead letter
    Unsubscribe.objects.create(customer=customers[0], channel="sms")
    Unsubscribe.objects.create(customer=customers[1], channel="sms")
    enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="t", now=NOON)
    drain(NOON)
    drain(NOON)  # the waits schedule "call" an hour later; nothing is due for it yet
    Enrollment.objects.filter(customer__in=customers[2:4]).update(goal_met_at=NOON + timedelta(days=1))

    funnel = {row["id"]: row for row in journey_funnel(user=operator, version=journey.live_version)}
    runs = StepRun.objects.filter(enrollment__journey=journey)
    assert list(funnel) == ["hello", "wait", "call"]
    assert funnel["hello"]["entered"] == runs.filter(step_id="hello").count() == 7
    assert funnel["hello"]["blocked"] == 2 and funnel["hello"]["blocked_by"][0]["reason"] == "unsubscribed"
    assert funnel["hello"]["dead"] == 1 and funnel["hello"]["sent"] == 4 == funnel["hello"]["done"]
    assert funnel["hello"]["converted"] == 2
    assert funnel["wait"]["done"] == runs.filter(step_id="wait", status="done").count() == 7  # blocked and dead go on
    assert funnel["call"]["waiting"] == runs.filter(step_id="call", status="due").count() == 7

    client.force_login(operator)
    page = client.get(reverse("sop:journey_results", args=[journey.pk])).content.decode()
    assert "客户已退订该渠道：2" in page and "服务商拒收" in page and "共 7 位客户" in page
    assert "1390000" not in page.replace("1390000****", "")  # mobiles are masked
    # the dead letter is retried: due again, attempts reset, audited, and the engine runs it
    dead = runs.get(status="dead")
    assert dead.enrollment.customer == bad_number
    with time_machine.travel(NOON + timedelta(seconds=30), tick=False):  # the retry is due "now": the operator's clock
        response = client.post(reverse("sop:journey_step_run_retry", args=[dead.pk]))
    assert response.status_code == 302
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.error) == ("due", 0, "")
    assert AuditLog.objects.filter(action="sop.step_run_retried", target_id=str(dead.pk)).exists()
    drain(NOON + timedelta(minutes=1))
    dead.refresh_from_db()
    assert dead.status == "dead"  # the number is still wrong: it dead-letters again, and the journey went on once
    assert runs.filter(step_id="wait").count() == 7


def test_ab_and_holdout_comparison(client, operator, provider, sop_kit, client_of):
    journey = sop_kit["publish"]([
        {"id": "split", "type": "branch", "condition": {"kind": "ab", "percent_a": 50}, "then": "a", "else": "b"},
        {"id": "a", "type": "task", "title": "A 组", "due_hours": 4},
        {"id": "b", "type": "task", "title": "B 组", "due_hours": 4},
    ], holdout_percent=30, goal={"type": "funded", "within_days": 7})
    for i in range(80):
        client_of(i)
    enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="t", now=NOON)
    while drain(NOON):
        pass
    enrollments = list(Enrollment.objects.filter(journey=journey).order_by("pk"))
    for n, e in enumerate(enrollments):  # a = every 2nd, b = every 4th, hold-out = every 5th converts
        if (e.variant == "A" and n % 2 == 0) or (e.variant == "B" and n % 4 == 0) or (e.status == "holdout" and n % 5 == 0):
            e.goal_met_at = NOON + timedelta(days=2)
            e.save(update_fields=["goal_met_at"])

    def group(rows):
        return {"enrolled": len(rows), "goal": sum(1 for e in rows if e.goal_met_at)}

    a = group([e for e in enrollments if e.variant == "A"])
    b = group([e for e in enrollments if e.variant == "B"])
    held = group([e for e in enrollments if e.status == "holdout"])
    treated = group([e for e in enrollments if e.status != "holdout"])
    assert held["enrolled"] > 5 and a["enrolled"] > 5 and b["enrolled"] > 5

    ab = journey_ab(user=operator, version=journey.live_version)
    assert (ab["a"]["enrolled"], ab["a"]["goal"], ab["b"]["enrolled"], ab["b"]["goal"]) == (
        a["enrolled"], a["goal"], b["enrolled"], b["goal"])
    assert ab["diff"] == round(round(100 * a["goal"] / a["enrolled"], 1) - round(100 * b["goal"] / b["enrolled"], 1), 1)
    assert ab["p"] == round(two_proportion_p(a["goal"], a["enrolled"], b["goal"], b["enrolled"]), 4)
    ho = journey_holdout(user=operator, version=journey.live_version)
    assert ho["treatment"]["enrolled"] == treated["enrolled"] and ho["treatment"]["goal"] == treated["goal"]
    assert ho["holdout"]["enrolled"] == held["enrolled"] and ho["holdout"]["goal"] == held["goal"]
    assert ho["percent"] == 30

    client.force_login(operator)
    page = client.get(reverse("sop:journey_results", args=[journey.pk])).content.decode()
    assert f"{ab['diff']} 个百分点" in page and "A/B 比较" in page and f"{ho['diff']} 个百分点" in page


def test_two_proportion_p_value_matches_the_textbook():
    # 45/100 vs 30/100: z = 0.15 / sqrt(.375*.625*.02) = 2.1909, two-sided p = 0.02846
    assert two_proportion_p(45, 100, 30, 100) == pytest.approx(math.erfc(2.19089 / math.sqrt(2)), abs=1e-4)
    assert two_proportion_p(45, 100, 30, 100) == pytest.approx(0.02846, abs=1e-4)
    assert two_proportion_p(0, 0, 1, 10) is None


def test_the_list_takes_a_fixed_number_of_queries(client, operator, provider, sop_kit, client_of, django_assert_max_num_queries):
    client.force_login(operator)
    sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}], name="第一个",
                       trigger={"type": "tag_added", "tag": "margin_intent"})

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("sop:list")).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    for i in range(5):
        journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}],
                                     trigger={"type": "tag_added", "tag": "margin_intent"}, name=f"旅程{i}",
                                     goal={"type": "funded", "within_days": 7}, holdout_percent=20)
        enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=client_of(i).pk),
                        trigger_key="t", now=NOON)
    drain(NOON)
    with django_assert_max_num_queries(few):
        response = client.get(reverse("sop:list"))
    page = response.content.decode()
    assert page.count('data-testid="journey-row"') == 6 and "打上标签：两融意向" in page


def test_dry_run_counts_entry_and_guards(client, operator, sop_kit, client_of):
    from segments.models import Segment, SegmentMember

    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    members = [client_of(i) for i in range(4)]
    Unsubscribe.objects.create(customer=members[0], channel="sms")
    segment = Segment.objects.create(name="试算客群", rule={"op": "and", "rules": []}, created_by=operator)
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, customer=c) for c in members])
    client.force_login(operator)
    page = client.get(reverse("sop:journey_dry_run", args=[journey.pk]), {"segment": segment.pk}).content.decode()
    assert 'data-testid="dry-matching">4<' in page and 'data-testid="dry-enter">4<' in page
    assert "客户已退订该渠道：<strong>1</strong>" in page


@pytest.mark.parametrize("role", ["advisor", "branch_manager", "hq_manager", "compliance"])
def test_only_operators_and_admins_reach_the_pages(client, request, role, operator, sop_kit):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    client.force_login(request.getfixturevalue(role))
    for url in (reverse("sop:list"), reverse("sop:journey_create"), reverse("sop:journey_edit", args=[journey.pk]),
                reverse("sop:journey_results", args=[journey.pk]), reverse("sop:journey_dry_run", args=[journey.pk])):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("sop:journey_publish", args=[journey.pk])).status_code == 404
    assert client.post(reverse("sop:journey_status", args=[journey.pk]), {"status": "archived"}).status_code == 404
    journey.refresh_from_db()
    assert journey.status == "live"


def test_admin_uses_the_pages(client, admin_user, sop_kit):
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    client.force_login(admin_user)
    for url in (reverse("sop:list"), reverse("sop:journey_edit", args=[journey.pk]),
                reverse("sop:journey_results", args=[journey.pk])):
        assert client.get(url).status_code == 200, url
    assert 'data-nav="sop"' in client.get(reverse("sop:list")).content.decode()


def test_the_editor_draws_merges_entry_rules_and_every_step_form(client, operator, sop_kit):
    from segments.models import Segment
    from sop.models import MessageTemplate
    from sop.services import journey_create

    segment = Segment.objects.create(name="高净值客群", rule={"op": "and", "rules": []}, created_by=operator)
    unapproved = MessageTemplate.objects.create(name="待审短信", channel="sms")
    journey = journey_create(actor=operator, name="合流", definition={
        "trigger": {"type": "segment_entered", "segment": segment.pk}, "start": "check",
        "entry_rule": {"op": "and", "rules": [{"type": "segment", "op": "in", "segment": segment.pk}]},
        "steps": [{"id": "check", "type": "branch", "condition": {"kind": "replied", "within_hours": 24},
                   "then": "bye", "else": "nudge"},
                  {"id": "nudge", "type": "sms", "template": unapproved.pk, "next": "bye"},
                  {"id": "bye", "type": "tag_add", "tag": "margin_intent"}]})
    client.force_login(operator)
    page = client.get(reverse("sop:journey_edit", args=[journey.pk])).content.decode()
    assert "进入客群：高净值客群" in page and "准入" in page
    assert "→ 接到步骤 bye" in page and "模板还没有合规已批准的版本" in page
    settings_form = client.get(reverse("sop:journey_settings", args=[journey.pk])).content.decode()
    assert f'<option value="{segment.pk}" selected>高净值客群</option>' in settings_form
    for step_type in ("wait", "sms", "app_push", "wecom_message", "wecom_group_message", "task", "branch", "tag_add",
                      "tag_remove", "group_invite", "webhook"):
        response = client.get(reverse("sop:journey_step_new", args=[journey.pk]),
                              {"after": "nudge", "arm": "next", "type": step_type})
        assert response.status_code == 200 and f'data-step-type="{step_type}"' in response.content.decode(), step_type
    form = client.get(reverse("sop:journey_step", args=[journey.pk, "check"])).content.decode()
    assert '<option value="replied" selected>' in form


def test_a_zero_wait_says_it_must_be_at_least_a_minute(client, operator, sop_kit):
    """A wait of 0 used to get 「须且只能指定 minutes、until_time 或 next_trading_day 之一」, which names none of what the
    operator typed: it says the wait must be at least 1 minute, next to the duration, and nothing is saved."""
    client.force_login(operator)
    journey = _create(client)
    before = _draft(journey)
    response = client.post(reverse("sop:journey_step", args=[journey.pk, "wait_1"]),
                           {"wait_mode": "minutes", "wait_value": 0, "wait_unit": "60"})
    body = response.content.decode()
    assert response.status_code == 400 and "等待时长至少 1 分钟" in body and "须且只能" not in body
    assert "$.steps[0].minutes" in body and _draft(journey) == before


def test_a_tier_change_trigger_names_the_tier_in_words(client, operator, sop_kit):
    client.force_login(operator)
    journey = _create(client, name="挽留旅程", trigger_type="tier_changed", to=["important_retain"])
    assert journey.draft["trigger"]["to"] == ["important_retain"]
    page = client.get(reverse("sop:journey_edit", args=[journey.pk])).content.decode()
    assert "变为 重要挽留" in page and "important_retain" not in page.split("变为")[1][:40]
    sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}], name="挽留短信",
                       trigger={"type": "tier_changed", "to": ["important_retain", "general_retain"]})
    listing = client.get(reverse("sop:list")).content.decode()
    assert "变为 重要挽留、一般挽留" in listing
