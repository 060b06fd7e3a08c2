"""The group pages and the WeCom sync cost a fixed number of queries, however many groups or members."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from groups.models import GroupMemberEvent
from groups.services import group_sync_from_wecom
from groups.tests.factories import group_chat_payload, make_group, member
from groups.tests.test_services import segment_of
from tagging.models import CustomerTier

pytestmark = pytest.mark.django_db


def _groups(advisor, n):
    for i in range(n):
        members = [CustomerFactory(advisor=advisor) for _ in range(2)]
        outside = CustomerFactory(advisor=advisor)
        group = make_group(advisor=advisor, name=f"群{i:02d}", audience=segment_of(members[0], outside, name=f"客群{i}"),
                           members=members)
        GroupMemberEvent.objects.create(group=group, userid=f"wm{i}", kind="join", at=timezone.now())


def _count(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_queries_do_not_grow_with_groups(client, advisor, branch_manager, django_assert_max_num_queries):
    _groups(advisor, 2)
    client.force_login(branch_manager)
    few = _count(client, reverse("groups:list"))
    _groups(advisor, 8)
    with django_assert_max_num_queries(few):
        body = client.get(reverse("groups:list")).content.decode()
    assert body.count('data-testid="group-gap">1<') == 10  # each group: one audience customer not in it
    assert body.count("+1</span>") == 10


def test_list_gap_counts_per_group_within_scope(client, advisor, same_branch_advisor, branch_manager):
    mine, colleague = CustomerFactory(advisor=advisor), CustomerFactory(advisor=same_branch_advisor)
    both = make_group(advisor=advisor, name="两人的群", audience=segment_of(mine, colleague, name="甲"))
    make_group(advisor=advisor, name="已满的群", audience=segment_of(mine, name="乙"), members=[mine])
    make_group(advisor=advisor, name="无客群的群")
    for viewer, expected in ((advisor, "1"), (branch_manager, "2")):
        client.force_login(viewer)
        body = client.get(reverse("groups:list")).content.decode()
        row = body[body.index(f'data-group="{both.chat_id}"'):].split("</tr>")[0]
        assert f'data-testid="group-gap">{expected}<' in row
    body = client.get(reverse("groups:list")).content.decode()
    full = body[body.index("已满的群"):].split("</tr>")[0]
    none = body[body.index("无客群的群"):].split("</tr>")[0]
    assert 'data-testid="group-gap">0<' in full and 'data-testid="group-gap">—<' in none


def test_detail_queries_do_not_grow_with_members_and_show_tiers(client, advisor, django_assert_max_num_queries):
    members = [CustomerFactory(advisor=advisor) for _ in range(2)]
    gap = CustomerFactory(advisor=advisor, name="待邀请带分层")
    CustomerTier.objects.create(customer=members[0], code="important_value", as_of=timezone.localdate())
    CustomerTier.objects.create(customer=gap, code="no_such_tier", as_of=timezone.localdate())
    group = make_group(advisor=advisor, audience=segment_of(gap, *members), members=members)
    client.force_login(advisor)
    url = reverse("groups:detail", args=[group.pk])
    few = _count(client, url)
    more = [CustomerFactory(advisor=advisor) for _ in range(12)]
    CustomerTier.objects.bulk_create([CustomerTier(customer=c, code="important_value", as_of=timezone.localdate()) for c in more])
    group.members.model.objects.bulk_create([group.members.model(group=group, userid=f"wmMORE{c.pk}", customer=c)
                                             for c in more])
    with django_assert_max_num_queries(few):
        body = client.get(url).content.decode()
    members_card = body[body.index('data-testid="group-members"'):]
    assert members_card.count("重要价值") == 13
    gap_card = body[body.index('data-testid="gap-list"'):body.index('data-testid="not-fitting-list"')]
    assert "待邀请带分层" in gap_card and "no_such_tier" in gap_card  # a tier of no active scheme shows its code
    assert "重要价值" in body[body.index('data-testid="not-fitting-list"'):]


def test_sync_queries_do_not_grow_with_members(advisor, django_assert_max_num_queries):
    advisor.wecom_userid = "zhangsan"
    advisor.save(update_fields=["wecom_userid"])
    for i in range(60):
        CustomerFactory(advisor=advisor, wecom_external_userid=f"wmC{i}")

    def payload(chat_id, n, start=0):
        return group_chat_payload(chat_id, members=[member("zhangsan", type=1)]
                                  + [member(f"wmC{i}") for i in range(start, start + n)])

    with CaptureQueriesContext(connection) as ctx:
        group_sync_from_wecom(payload("wrSMALL", 3))
        group_sync_from_wecom(payload("wrSMALL", 3, start=1))  # one leaves, one joins
    small = len(ctx.captured_queries)
    with django_assert_max_num_queries(small):
        group_sync_from_wecom(payload("wrBIG", 50))
        group = group_sync_from_wecom(payload("wrBIG", 50, start=5))
    assert group.member_count == 51 and group.members.filter(left_at__isnull=False).count() == 5
    assert group.member_events.filter(kind="join").count() == 56
