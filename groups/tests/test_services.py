from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from customers.models import Task
from customers.tests.factories import CustomerFactory, TaskFactory
from groups import selectors
from groups.models import GroupChat, GroupDailyStat, GroupMember, GroupMemberEvent, Purpose
from groups.services import group_invite_tasks_create, group_stats_record, group_update, segment_action_group_invite
from groups.tests.factories import make_group
from segments.actions import SEGMENT_ACTION_HANDLERS, SEGMENT_ACTION_VALIDATORS
from segments.models import Segment, SegmentAction, SegmentMember
from tagging.models import CustomerTier

pytestmark = pytest.mark.django_db


def segment_of(*customers, name="高净值客群", branch=None) -> Segment:
    segment = Segment.objects.create(name=name, rule={"op": "and", "rules": []}, branch=branch)
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, customer=c) for c in customers])
    return segment


@pytest.fixture
def world(advisor, same_branch_advisor, other_branch_advisor):
    """A Beijing group of ``advisor`` whose audience holds clients of three advisors."""
    mine_in = CustomerFactory(advisor=advisor, name="已入群甲", wecom_external_userid="wmIN")
    mine_out = CustomerFactory(advisor=advisor, name="未入群乙")
    colleague_out = CustomerFactory(advisor=same_branch_advisor, name="同事客户丙")
    shanghai_out = CustomerFactory(advisor=other_branch_advisor, name="上海客户丁")
    member_not_fitting = CustomerFactory(advisor=advisor, name="不再符合戊")
    segment = segment_of(mine_in, mine_out, colleague_out, shanghai_out)
    group = make_group(advisor=advisor, members=[mine_in, member_not_fitting], audience=segment)
    return {"group": group, "segment": segment, "mine_in": mine_in, "mine_out": mine_out,
            "colleague_out": colleague_out, "shanghai_out": shanghai_out, "not_fitting": member_not_fitting}


def names(qs):
    return sorted(qs.values_list("name", flat=True))


def test_groups_visible_by_role(advisor, same_branch_advisor, other_branch_advisor, branch_manager, operator, admin_user):
    mine = make_group(advisor=advisor)
    colleague = make_group(advisor=same_branch_advisor)
    shanghai = make_group(advisor=other_branch_advisor)
    assert list(selectors.groups_visible_to(advisor)) == [mine]
    assert set(selectors.groups_visible_to(branch_manager)) == {mine, colleague}
    assert set(selectors.groups_visible_to(operator)) == set(selectors.groups_visible_to(admin_user)) == {
        mine, colleague, shanghai}
    with pytest.raises(Exception) as exc:
        selectors.group_get_for_user(user=advisor, group_id=shanghai.pk)
    assert exc.typename == "Http404"


def test_audience_gap_both_ways_within_scope(world, advisor, branch_manager, operator):
    group = world["group"]
    assert names(selectors.audience_not_in_group(group, advisor)) == ["未入群乙"]
    assert names(selectors.audience_not_in_group(group, branch_manager)) == ["同事客户丙", "未入群乙"]
    assert names(selectors.audience_not_in_group(group, operator)) == ["上海客户丁", "同事客户丙", "未入群乙"]
    assert names(selectors.members_not_fitting(group, advisor)) == ["不再符合戊"]
    # a member who leaves is in the gap again and no longer "not fitting"
    GroupMember.objects.filter(customer=world["not_fitting"]).update(left_at=timezone.now())
    GroupMember.objects.filter(customer=world["mine_in"]).update(left_at=timezone.now())
    assert names(selectors.audience_not_in_group(group, advisor)) == ["已入群甲", "未入群乙"]
    assert names(selectors.members_not_fitting(group, advisor)) == []


def test_no_audience_no_gap(advisor):
    group = make_group(advisor=advisor, members=[CustomerFactory(advisor=advisor)])
    assert not selectors.audience_not_in_group(group, advisor).exists()
    assert not selectors.members_not_fitting(group, advisor).exists()


def test_invite_tasks_one_per_customer_for_their_advisor_without_duplicates(world, branch_manager, advisor,
                                                                             same_branch_advisor):
    group = world["group"]
    everyone = [world[k].pk for k in ("mine_in", "mine_out", "colleague_out", "shanghai_out")]
    result = group_invite_tasks_create(actor=branch_manager, group=group, customers=everyone)
    assert result == {"requested": 4, "created": 2, "already_member": 1, "already_invited": 0, "no_advisor": 0,
                      "out_of_scope": 1}
    tasks = Task.objects.filter(source="group_invite")
    assert sorted((t.customer.name, t.assignee_id) for t in tasks) == [
        ("同事客户丙", same_branch_advisor.pk), ("未入群乙", advisor.pk)]
    task = tasks.get(customer=world["mine_out"])
    assert task.title == f"邀请客户加入群「{group.name}」"
    assert timedelta(days=2, hours=23) < task.due_at - timezone.now() <= timedelta(days=3)
    # again: the open invites are skipped; a closed one does not block a new invite
    again = group_invite_tasks_create(actor=branch_manager, group=group, customers=everyone)
    assert again["created"] == 0 and again["already_invited"] == 2
    tasks.filter(customer=world["mine_out"]).update(status="cancelled")
    assert group_invite_tasks_create(actor=advisor, group=group, customers=everyone)["created"] == 1
    # an unrelated open task does not count as an invite
    other = CustomerFactory(advisor=advisor)
    TaskFactory(customer=other, assignee=advisor, due_at=timezone.now(), source="group_invite", source_label="别的群")
    assert group_invite_tasks_create(actor=advisor, group=group, customers=[other.pk])["created"] == 1


def test_invite_refuses_groups_out_of_scope_and_dismissed(world, other_branch_advisor):
    with pytest.raises(ApplicationError):
        group_invite_tasks_create(actor=other_branch_advisor, group=world["group"], customers=[world["mine_out"].pk])
    GroupChat.objects.filter(pk=world["group"].pk).update(status="dismissed")
    world["group"].refresh_from_db()
    with pytest.raises(ApplicationError):
        group_invite_tasks_create(actor=world["group"].advisor, group=world["group"], customers=[world["mine_out"].pk])
    assert not Task.objects.exists()


def test_segment_action_group_invite(world, operator, advisor, other_branch_advisor):
    assert SEGMENT_ACTION_HANDLERS["group_invite"] is segment_action_group_invite
    assert SEGMENT_ACTION_VALIDATORS["group_invite"]({"group_id": str(world["group"].pk)}) == {
        "group_id": world["group"].pk}
    segment, group = world["segment"], world["group"]
    action = SegmentAction.objects.create(segment=segment, kind="group_invite", params={"group_id": group.pk},
                                          created_by=operator)
    members = segment.members.values("customer_id")
    from customers.models import Customer

    result = SEGMENT_ACTION_HANDLERS["group_invite"](action=action, customers=Customer.objects.filter(pk__in=members),
                                                     actor=operator)
    assert result["created"] == 3 and result["already_member"] == 1 and result["group_id"] == group.pk
    # a group the actor cannot see, or none at all, is refused with the field named
    for params in ({"group_id": group.pk}, {}, {"group_id": "x"}, {"group_id": 999999}):
        action.params = params
        with pytest.raises(ApplicationError) as exc:
            segment_action_group_invite(action=action, customers=Customer.objects.none(), actor=other_branch_advisor)
        assert exc.value.details[0]["field"] == "params.group_id"


def test_group_update_by_role(world, advisor, branch_manager, other_branch_manager, operator, make_staff):
    group, segment = world["group"], world["segment"]
    updated = group_update(actor=branch_manager, group=group, purpose=Purpose.VIP, audience=segment)
    assert updated.purpose == "vip" and updated.audience == segment
    for outsider in (advisor, other_branch_manager):
        with pytest.raises(ApplicationError):
            group_update(actor=outsider, group=group, purpose=Purpose.FUND, audience=None)
    with pytest.raises(ApplicationError) as exc:
        group_update(actor=operator, group=group, purpose="party", audience=None)
    assert exc.value.details[0]["field"] == "purpose"
    shanghai_segment = segment_of(name="上海客群", branch=other_branch_manager.branch)
    with pytest.raises(ApplicationError) as exc:
        group_update(actor=branch_manager, group=group, purpose=Purpose.FUND, audience=shanghai_segment)
    assert exc.value.details[0]["field"] == "audience"
    group.refresh_from_db()
    assert group.purpose == "vip" and group.audience == segment
    assert group_update(actor=operator, group=group, purpose=Purpose.FUND, audience=None).audience is None


def test_stats_per_day_are_idempotent(advisor):
    a, b, c = (CustomerFactory(advisor=advisor) for _ in range(3))
    CustomerTier.objects.create(customer=a, code="important_value", as_of=timezone.localdate())
    group = make_group(advisor=advisor, members=[a, b])
    GroupMember.objects.create(group=group, userid="staff1", type=1)
    yesterday = timezone.localdate() - timedelta(days=1)
    start, end = selectors.day_bounds(yesterday)
    GroupMember.objects.filter(group=group).update(joined_at=start - timedelta(days=10))
    left = GroupMember.objects.create(group=group, userid="wmLEFT", customer=c, joined_at=start - timedelta(days=5),
                                      left_at=start + timedelta(hours=10))
    GroupMemberEvent.objects.bulk_create([
        GroupMemberEvent(group=group, userid="wmX", kind="join", at=start + timedelta(hours=1)),
        GroupMemberEvent(group=group, userid="wmLEFT", customer=c, kind="leave", at=left.left_at),
        GroupMemberEvent(group=group, userid="wmY", kind="join", at=end + timedelta(minutes=1)),  # today
    ])
    dismissed = make_group(advisor=advisor, status="dismissed")
    assert group_stats_record(yesterday) == 1
    assert group_stats_record(yesterday) == 1
    stat = GroupDailyStat.objects.get(group=group, day=yesterday)
    assert (stat.members, stat.clients, stat.joins, stat.leaves) == (3, 2, 1, 1)
    assert stat.tiers == {"important_value": 1, "": 1}
    assert not GroupDailyStat.objects.filter(group=dismissed).exists()
    assert GroupDailyStat.objects.count() == 1


def test_health_combines_daily_record_and_live_numbers(advisor):
    a, b = CustomerFactory(advisor=advisor), CustomerFactory(advisor=advisor)
    CustomerTier.objects.create(customer=a, code="important_value", as_of=timezone.localdate())
    group = make_group(advisor=advisor, members=[a, b])
    GroupMember.objects.create(group=group, userid="staff1", type=1)
    today = timezone.localdate()
    GroupDailyStat.objects.create(group=group, day=today - timedelta(days=2), members=5, clients=4, joins=2, leaves=1)
    # stamped like group_sync_from_wecom does, on the clock group_health reads (the column default is PostgreSQL's)
    GroupMemberEvent.objects.create(group=group, userid="wmX", kind="join", at=timezone.now())
    GroupMemberEvent.objects.create(group=group, userid="wmZ", kind="leave", at=timezone.now() - timedelta(days=1))
    health = selectors.group_health(group, days=30)
    days = {d["day"]: d for d in health["days"]}
    assert len(days) == 30
    assert days[(today - timedelta(days=2)).isoformat()] == {"day": (today - timedelta(days=2)).isoformat(),
                                                             "members": 5, "clients": 4, "joins": 2, "leaves": 1}
    assert days[(today - timedelta(days=1)).isoformat()]["leaves"] == 1  # not recorded: from the events
    assert days[(today - timedelta(days=1)).isoformat()]["members"] is None
    assert days[today.isoformat()] == {"day": today.isoformat(), "members": 3, "clients": 2, "joins": 1, "leaves": 0}
    assert health["client_share"] == 66.7 and health["joins_7d"] == 3 and health["leaves_7d"] == 2
    assert [(t["label"], t["count"], t["share"]) for t in health["tiers"]] == [("重要价值", 1, 50.0), ("未分层", 1, 50.0)]


@pytest.mark.django_db(transaction=True)
def test_daily_stats_task_runs_in_the_worker(celery_worker, advisor):
    from groups.tasks import daily_stats

    group = make_group(advisor=advisor, members=[CustomerFactory(advisor=advisor)])
    day = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert daily_stats.delay(day).get(timeout=60) == 1
    assert GroupDailyStat.objects.get(group=group).members == 1


def test_system_invites_without_scope_cut(world, same_branch_advisor):
    """An SOP step invites as the system (actor None): every requested customer counts."""
    everyone = [world[k].pk for k in ("mine_in", "mine_out", "colleague_out", "shanghai_out")]
    result = group_invite_tasks_create(actor=None, group=world["group"], customers=everyone)
    assert result["created"] == 3 and result["out_of_scope"] == 0 and result["already_member"] == 1
    assert Task.objects.get(customer=world["colleague_out"]).assignee == same_branch_advisor


def test_segment_bulk_action_invites_through_the_segments_service(world, operator):
    from segments.services import action_run, action_start

    with pytest.raises(ApplicationError) as exc:
        action_start(actor=operator, segment=world["segment"], kind="group_invite", params={"group_id": 0})
    assert exc.value.details[0]["field"] == "params.group_id"
    assert not SegmentAction.objects.exists()
    action = action_start(actor=operator, segment=world["segment"], kind="group_invite",
                          params={"group_id": str(world["group"].pk)})
    action = action_run(action_id=action.pk)
    assert action.status == "done" and action.affected == 3 and action.result["already_member"] == 1
    assert Task.objects.filter(source="group_invite").count() == 3


def test_open_invites_still_count_after_the_group_is_renamed(world, advisor):
    group = world["group"]
    assert group_invite_tasks_create(actor=advisor, group=group, customers=[world["mine_out"].pk])["created"] == 1
    first = Task.objects.get(source="group_invite")
    GroupChat.objects.filter(pk=group.pk).update(name="改名后的群")  # e.g. renamed in WeCom, then synced
    group.refresh_from_db()
    again = group_invite_tasks_create(actor=advisor, group=group, customers=[world["mine_out"].pk])
    assert again["created"] == 0 and again["already_invited"] == 1
    assert selectors.audience_not_in_group(group, advisor).get().invite_open is True
    # another group's open invite does not count, even when that group's name carries this one's number
    other = make_group(advisor=advisor, name=f"群」#{group.pk}", audience=world["segment"])
    assert group_invite_tasks_create(actor=advisor, group=other, customers=[world["mine_out"].pk])["created"] == 1
    Task.objects.filter(pk=first.pk).update(status="cancelled")
    assert group_invite_tasks_create(actor=advisor, group=group, customers=[world["mine_out"].pk])["created"] == 1
