"""What starts a journey: other areas' hooks and the beat scan."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.events import TagChanged
from customers.models import Customer
from sop.models import Enrollment
from sop.triggers import on_tag_changed, triggers_scan

pytestmark = pytest.mark.django_db

SMS = "sms"


def test_a_tag_added_enrolls_the_client_in_journeys_waiting_for_it(sop_kit, client_of, operator,
                                                                   django_capture_on_commit_callbacks):
    from tagging.models import Tag, TagSource
    from tagging.services import customer_tag_add

    journey = sop_kit["publish"]([{"id": "a", "type": "task", "title": "两融意向回访", "due_hours": 4}],
                                 trigger={"type": "tag_added", "tag": "margin_intent"})
    customer = client_of(1)
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_add(customer=customer, tag=Tag.objects.get(code="margin_intent"), source=TagSource.MANUAL,
                         actor=operator)
    assert list(Enrollment.objects.values_list("journey_id", "customer_id")) == [(journey.pk, customer.pk)]
    with django_capture_on_commit_callbacks(execute=True):  # another tag: not this journey's trigger
        customer_tag_add(customer=client_of(2), tag=Tag.objects.get(code="idle_funds"), source=TagSource.MANUAL,
                         actor=operator)
    assert Enrollment.objects.count() == 1


def test_tag_changes_cost_no_query_when_no_journey_listens(sop_kit, client_of, django_assert_num_queries):
    sop_kit["publish"]([{"id": "a", "type": "task", "title": "x", "due_hours": 4}],
                       trigger={"type": "tag_added", "tag": "margin_intent"})
    customer = client_of(1)
    # the first call warms the cache of live triggers
    on_tag_changed(TagChanged(customer_id=customer.pk, tag_code="idle_funds", action="added", source="rule"))
    with django_assert_num_queries(0):
        for _ in range(100):
            on_tag_changed(TagChanged(customer_id=customer.pk, tag_code="idle_funds", action="added", source="rule"))


def test_pausing_a_journey_stops_its_trigger_at_once(sop_kit, client_of, operator):
    from sop.services import journey_set_status

    journey = sop_kit["publish"]([{"id": "a", "type": "task", "title": "x", "due_hours": 4}],
                                 trigger={"type": "tag_added", "tag": "margin_intent"})
    on_tag_changed(TagChanged(customer_id=client_of(1).pk, tag_code="margin_intent", action="added", source="rule"))
    journey_set_status(actor=operator, journey=journey, status="paused")
    on_tag_changed(TagChanged(customer_id=client_of(2).pk, tag_code="margin_intent", action="added", source="rule"))
    assert Enrollment.objects.count() == 1


def test_the_scan_enrolls_stalled_account_openings_once(sop_kit, client_of):
    sop_kit["publish"]([{"id": "a", "type": "task", "title": "提醒完成视频见证", "due_hours": 4}],
                       trigger={"type": "funnel_stalled", "stage": "password_set", "hours": 24})
    now = timezone.now()
    stalled, fresh, long_ago = client_of(1), client_of(2), client_of(3)
    Customer.objects.filter(pk__in=[stalled.pk, fresh.pk, long_ago.pk]).update(funnel_stage="password_set")
    Customer.objects.filter(pk=stalled.pk).update(updated_at=now - timedelta(hours=30))
    Customer.objects.filter(pk=long_ago.pk).update(updated_at=now - timedelta(days=40))
    triggers_scan(now)
    triggers_scan(now + timedelta(minutes=1))
    assert list(Enrollment.objects.values_list("customer_id", flat=True)) == [stalled.pk]


def test_a_segment_bulk_action_enrolls_its_members(sop_kit, client_of, operator):
    from segments.services import action_run, action_start, segment_create, segment_rebuild

    journey = sop_kit["publish"]([{"id": "a", "type": "task", "title": "x", "due_hours": 4}])
    rich = client_of(1, total_assets=900000)
    client_of(2, total_assets=10)
    segment = segment_create(actor=operator, name="高净值", rule={"type": "attribute", "field": "total_assets",
                                                                "op": "gte", "value": 500000})
    segment_rebuild(segment_id=segment.pk)
    action = action_start(actor=operator, segment=segment, kind="sop_enroll", params={"journey_id": journey.pk})
    action_run(action_id=action.pk)
    action.refresh_from_db()
    assert action.status == "done", action.error
    assert list(Enrollment.objects.values_list("customer_id", flat=True)) == [rich.pk]


@pytest.mark.django_db(transaction=True)
def test_the_segment_page_enrolls_its_members_in_a_running_journey(client, sop_kit, client_of, operator,
                                                                   celery_worker):
    import time

    from segments.models import SegmentAction
    from segments.services import segment_create, segment_rebuild

    journey = sop_kit["publish"]([{"id": "a", "type": "task", "title": "x", "due_hours": 4}], name="高净值关怀")
    rich = client_of(1, total_assets=900000)
    segment = segment_create(actor=operator, name="高净值", rule={"type": "attribute", "field": "total_assets",
                                                                "op": "gte", "value": 500000})
    segment_rebuild(segment_id=segment.pk)
    client.force_login(operator)
    page = client.get(f"/segments/{segment.pk}/").content.decode()
    assert "高净值关怀" in page  # the running journey is offered
    response = client.post(f"/segments/{segment.pk}/actions/", {"kind": "sop_enroll", "journey_id": journey.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    deadline = time.monotonic() + 30
    while SegmentAction.objects.get().status in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    action = SegmentAction.objects.get()
    assert (action.status, action.affected) == ("done", 1), action.error
    assert list(Enrollment.objects.values_list("customer_id", flat=True)) == [rich.pk]
