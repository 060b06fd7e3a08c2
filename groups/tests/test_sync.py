from datetime import UTC, datetime, timedelta

import pytest

from customers.tests.factories import CustomerFactory
from groups.models import GroupChat, GroupMember, GroupMemberEvent
from groups.services import group_dismissed, group_sync_from_wecom
from groups.tests.factories import group_chat_payload, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(advisor):
    advisor.wecom_userid = "zhangsan"
    advisor.save(update_fields=["wecom_userid"])
    return advisor


def _events(group):
    return sorted(group.member_events.values_list("userid", "kind"))


def test_first_sync_maps_owner_links_customers_and_records_joins(owner):
    client = CustomerFactory(advisor=owner, wecom_external_userid="wmCLIENT1")
    payload = group_chat_payload(members=[member("zhangsan", type=1), member("wmCLIENT1"), member("wmSTRANGER")],
                                 notice="每日复盘")
    group = group_sync_from_wecom(payload)

    assert group.advisor == owner and group.branch == owner.branch
    assert group.member_count == 3 and group.notice == "每日复盘" and group.status == GroupChat.Status.ACTIVE
    assert group.wecom_created_at == datetime.fromtimestamp(1_690_000_000, tz=UTC)
    linked = dict(group.members.values_list("userid", "customer_id"))
    assert linked == {"zhangsan": None, "wmCLIENT1": client.pk, "wmSTRANGER": None}
    assert _events(group) == [("wmCLIENT1", "join"), ("wmSTRANGER", "join"), ("zhangsan", "join")]
    # a join is dated when WeCom says the member joined
    assert group.member_events.get(userid="wmCLIENT1").at == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_same_input_twice_changes_nothing(owner):
    payload = group_chat_payload(members=[member("zhangsan", type=1), member("wmA")])
    group = group_sync_from_wecom(payload)
    synced_at = group.synced_at
    again = group_sync_from_wecom(payload)
    assert again.pk == group.pk and again.synced_at == synced_at
    assert GroupMemberEvent.objects.count() == 2 and GroupMember.objects.count() == 2


def test_leave_and_rejoin_are_recorded(owner):
    group = group_sync_from_wecom(group_chat_payload(members=[member("wmA"), member("wmB")]))
    left_at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    group_sync_from_wecom(group_chat_payload(members=[member("wmA")]), at=left_at)
    b = GroupMember.objects.get(group=group, userid="wmB")
    assert b.left_at == left_at
    group.refresh_from_db()
    assert group.member_count == 1
    assert _events(group) == [("wmA", "join"), ("wmB", "join"), ("wmB", "leave")]

    back = int((left_at + timedelta(days=2)).timestamp())
    group_sync_from_wecom(group_chat_payload(members=[member("wmA"), member("wmB", join_time=back)]))
    b.refresh_from_db()
    assert b.left_at is None and b.joined_at == left_at + timedelta(days=2)
    assert _events(group) == [("wmA", "join"), ("wmB", "join"), ("wmB", "join"), ("wmB", "leave")]
    group.refresh_from_db()
    assert group.member_count == 2
    # and again: nothing more
    group_sync_from_wecom(group_chat_payload(members=[member("wmA"), member("wmB", join_time=back)]))
    assert GroupMemberEvent.objects.filter(group=group).count() == 4


def test_customer_linked_later_is_picked_up(owner):
    group = group_sync_from_wecom(group_chat_payload(members=[member("wmLATE")]))
    assert group.members.get().customer is None
    client = CustomerFactory(advisor=owner, wecom_external_userid="wmLATE")
    group_sync_from_wecom(group_chat_payload(members=[member("wmLATE")]))
    assert group.members.get().customer == client
    assert group.member_events.count() == 1


def test_unknown_owner_leaves_group_unowned_then_owner_change_moves_scope(owner, other_branch_advisor):
    group = group_sync_from_wecom(group_chat_payload(owner="nobody", members=[member("wmA")]))
    assert group.advisor is None and group.branch is None and group.owner_userid == "nobody"
    other_branch_advisor.wecom_userid = "lisi"
    other_branch_advisor.save(update_fields=["wecom_userid"])
    group = group_sync_from_wecom(group_chat_payload(owner="lisi", members=[member("wmA")]))
    assert group.advisor == other_branch_advisor and group.branch == other_branch_advisor.branch


def test_dismiss_marks_group_and_members_left_once(owner):
    group = group_sync_from_wecom(group_chat_payload(members=[member("wmA"), member("wmB")]))
    at = datetime(2026, 2, 1, tzinfo=UTC)
    group_dismissed(group.chat_id, at=at)
    group.refresh_from_db()
    assert group.status == GroupChat.Status.DISMISSED and group.member_count == 0
    assert set(group.members.values_list("left_at", flat=True)) == {at}
    group_dismissed(group.chat_id)
    assert group.member_events.filter(kind="leave").count() == 2
    assert group_dismissed("unknown-chat") is None
