"""Bulk actions on a segment: tags and tasks, set-based, limited to the actor's scope; bad params store nothing."""

import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers.models import Task
from customers.tests.factories import CustomerFactory
from segments.actions import SEGMENT_ACTION_HANDLERS, register_action_handler
from segments.models import Segment, SegmentAction
from segments.services import action_run, action_start, segment_create, segment_rebuild
from tagging.models import CustomerTag, CustomerTagHistory, Tag

RICH = {"op": "and", "rules": [{"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]}


@pytest.fixture
def world(operator, advisor, other_branch_advisor):
    bj = CustomerFactory(advisor=advisor, total_assets=Decimal("2000000"))
    orphan = CustomerFactory(advisor=None, total_assets=Decimal("3000000"))  # BJ01, no advisor
    sh = CustomerFactory(advisor=other_branch_advisor, total_assets=Decimal("4000000"))
    CustomerFactory(advisor=advisor, total_assets=Decimal("10"))
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    segment_rebuild(segment_id=segment.pk)
    return {"segment": segment, "bj": bj, "orphan": orphan, "sh": sh}


def run(actor, segment, kind, params):
    return action_run(action_id=action_start(actor=actor, segment=segment, kind=kind, params=params).pk)


@pytest.mark.django_db
def test_tag_add_and_remove_reach_only_the_actors_scope(world, branch_manager, django_capture_on_commit_callbacks):
    from core.events import TagChanged, listening

    with listening(TagChanged) as events, django_capture_on_commit_callbacks(execute=True):
        added = run(branch_manager, world["segment"], "tag_add", {"tag": "margin_intent"})
    heard = [(e.customer_id, e.tag_code, e.action, e.source) for e in events]
    assert added.status == "done", added.error
    assert added.affected == 2 and added.result["members"] == 2
    tagged = set(CustomerTag.objects.filter(tag__code="margin_intent").values_list("customer_id", flat=True))
    assert tagged == {world["bj"].pk, world["orphan"].pk}  # not the Shanghai member
    assert CustomerTagHistory.objects.filter(tag__code="margin_intent", action="added", source="manual").count() == 2
    assert sorted(h[0] for h in heard) == sorted(tagged) and {h[2] for h in heard} == {"added"}
    assert AuditLog.objects.filter(action="segment.action", actor=branch_manager,
                                   details__kind="tag_add").exists()

    again = run(branch_manager, world["segment"], "tag_add", {"tag": "margin_intent"})
    assert again.affected == 0  # already tagged: nothing changes
    removed = run(branch_manager, world["segment"], "tag_remove", {"tag": "margin_intent"})
    assert removed.affected == 2 and not CustomerTag.objects.filter(tag__code="margin_intent").exists()


@pytest.mark.django_db
def test_tasks_go_to_each_members_advisor_and_members_without_one_are_skipped(world, operator, advisor,
                                                                            other_branch_advisor):
    before = timezone.now()
    action = run(operator, world["segment"], "tasks", {"title": "季度回访", "due_days": 7})
    after = timezone.now()
    assert action.status == "done", action.error
    assert action.result == {"members": 3, "created": 2, "skipped": 1, "affected": 2}
    tasks = {(t.customer_id, t.assignee_id) for t in Task.objects.filter(title="季度回访", status="open")}
    assert tasks == {(world["bj"].pk, advisor.pk), (world["sh"].pk, other_branch_advisor.pk)}
    task = Task.objects.get(customer=world["bj"])
    assert task.source == "segment" and "高净值" in task.source_label
    # due 7 days from when the action ran, on the clock the service reads (created_at is stamped by PostgreSQL's)
    assert before + timedelta(days=7) <= task.due_at <= after + timedelta(days=7)


@pytest.mark.django_db
def test_the_action_list_says_what_was_done_in_words(client, world, operator):
    run(operator, world["segment"], "tasks", {"title": "季度回访", "due_days": 7})
    run(operator, world["segment"], "tag_add", {"tag": "margin_intent"})
    client.force_login(operator)
    rows = "".join(re.findall(r'data-testid="action-row".*?</tr>', client.get(
        f"/segments/{world['segment'].pk}/").content.decode(), re.S))
    assert "任务标题：季度回访；期限（天）：7" in rows and "成员 3；新建任务 2；跳过 1" in rows
    assert "标签：" + Tag.objects.get(code="margin_intent").name in rows
    assert "created" not in rows and "due_days" not in rows and "margin_intent" not in rows


@pytest.mark.django_db
@pytest.mark.parametrize("kind, params, field", [
    ("tag_add", {"tag": "no_such_tag"}, "params.tag"),
    ("tag_remove", {}, "params.tag"),
    ("tasks", {"title": "回访", "due_days": 31}, "params.due_days"),
    ("tasks", {"title": "回访", "due_days": 0}, "params.due_days"),
    ("tasks", {"title": "  ", "due_days": 3}, "params.title"),
    ("launch_rocket", {}, "kind"),
])
def test_bad_params_or_kinds_store_nothing(world, operator, kind, params, field):
    with pytest.raises(ApplicationError) as err:
        action_start(actor=operator, segment=world["segment"], kind=kind, params=params)
    assert err.value.details[0]["field"] == field
    assert not SegmentAction.objects.exists() and not AuditLog.objects.filter(action="segment.action").exists()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_an_unregistered_area_action_says_so_in_chinese(world, operator):
    saved = SEGMENT_ACTION_HANDLERS.pop("group_invite", None)
    try:
        with pytest.raises(ApplicationError) as err:
            action_start(actor=operator, segment=world["segment"], kind="group_invite", params={})
        assert err.value.message == "批量动作「邀请入群」尚未启用，请联系管理员"
    finally:
        if saved:
            SEGMENT_ACTION_HANDLERS["group_invite"] = saved


@pytest.mark.django_db
def test_registered_handlers_get_scoped_members_and_their_validator_runs(world, branch_manager):
    seen = {}

    def handler(*, action, customers, actor):
        seen["ids"] = set(customers.values_list("pk", flat=True))
        return {"affected": len(seen["ids"]), "note": "ok"}

    def validate(params):
        if not isinstance(params.get("journey"), int):
            raise ApplicationError("invalid", "请选择旅程", [{"field": "params.journey", "message": "请选择旅程"}])
        return {"journey": params["journey"]}

    saved = SEGMENT_ACTION_HANDLERS.get("sop_enroll")
    register_action_handler("test_enroll", handler, validate)
    try:
        with pytest.raises(ApplicationError):
            action_start(actor=branch_manager, segment=world["segment"], kind="test_enroll", params={})
        action = run(branch_manager, world["segment"], "test_enroll", {"journey": 5, "junk": 1})
    finally:
        SEGMENT_ACTION_HANDLERS.pop("test_enroll")
        from segments.actions import SEGMENT_ACTION_VALIDATORS
        SEGMENT_ACTION_VALIDATORS.pop("test_enroll")
    assert SEGMENT_ACTION_HANDLERS.get("sop_enroll") is saved
    assert action.status == "done" and action.params == {"journey": 5}
    assert seen["ids"] == {world["bj"].pk, world["orphan"].pk} and action.affected == 2


@pytest.mark.django_db(transaction=True)
def test_actions_run_in_the_worker(celery_worker, operator, advisor):
    CustomerFactory(advisor=advisor, total_assets=Decimal("2000000"))
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    deadline = time.monotonic() + 40
    while not Segment.objects.filter(pk=segment.pk, rebuilt_at__isnull=False).exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    action = action_start(actor=operator, segment=segment, kind="tag_add", params={"tag": "idle_funds"})
    while not SegmentAction.objects.filter(pk=action.pk, status__in=["done", "failed"]).exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    action.refresh_from_db()
    assert action.status == "done" and action.affected == 1
    assert Tag.objects.get(code="idle_funds").customer_tags.count() == 1
