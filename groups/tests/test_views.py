import pytest
from django.urls import reverse
from django.utils import timezone

from customers.models import Task
from customers.tests.factories import CustomerFactory
from groups.models import GroupMemberEvent
from groups.tests.factories import make_group
from groups.tests.test_services import segment_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(advisor, same_branch_advisor, other_branch_advisor):
    mine_client = CustomerFactory(advisor=advisor, name="北京群客户", mobile="13800001111")
    audience_only = CustomerFactory(advisor=advisor, name="待邀请客户")
    colleague_client = CustomerFactory(advisor=same_branch_advisor, name="同事的客户")
    segment = segment_of(mine_client, audience_only)
    mine = make_group(advisor=advisor, name="北京股友群", purpose="stock_friends", audience=segment,
                      members=[mine_client, colleague_client])
    GroupMemberEvent.objects.create(group=mine, userid="wmX", kind="join", at=timezone.now())
    colleague = make_group(advisor=same_branch_advisor, name="同事基金群", purpose="fund")
    shanghai = make_group(advisor=other_branch_advisor, name="上海VIP群", purpose="vip",
                          members=[CustomerFactory(advisor=other_branch_advisor, name="上海专属客户")])
    return {"mine": mine, "colleague": colleague, "shanghai": shanghai, "segment": segment,
            "audience_only": audience_only}


def test_list_shows_groups_in_scope_with_numbers(client, groups, advisor, branch_manager, operator):
    client.force_login(advisor)
    body = client.get(reverse("groups:list")).content.decode()
    assert "北京股友群" in body and "同事基金群" not in body and "上海VIP群" not in body
    row = body[body.index('data-group="' + groups["mine"].chat_id):]
    row = row[:row.index("</tr>")]
    assert "股友群" in row and "+1" in row and "高净值客群" in row
    assert 'data-testid="group-gap">1<' in row  # 待邀请客户
    client.force_login(branch_manager)
    body = client.get(reverse("groups:list")).content.decode()
    assert "北京股友群" in body and "同事基金群" in body and "上海VIP群" not in body
    client.force_login(operator)
    body = client.get(reverse("groups:list") + "?purpose=vip").content.decode()
    assert "上海VIP群" in body and "北京股友群" not in body
    body = client.get(reverse("groups:list"), {"owner": groups["colleague"].advisor_id}).content.decode()
    assert "同事基金群" in body and "北京股友群" not in body


@pytest.mark.parametrize("role", ["hq_manager", "compliance"])
def test_roles_without_groups_get_404(client, groups, request, role):
    client.force_login(request.getfixturevalue(role))
    assert client.get(reverse("groups:list")).status_code == 404
    assert client.get(reverse("groups:detail", args=[groups["mine"].pk])).status_code == 404


def test_detail_by_scope(client, groups, advisor, same_branch_advisor, branch_manager, other_branch_manager, operator):
    url = reverse("groups:detail", args=[groups["mine"].pk])
    for outsider in (same_branch_advisor, other_branch_manager):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
        assert client.post(reverse("groups:invite", args=[groups["mine"].pk]), {"all": "1"}).status_code == 404
    client.force_login(advisor)
    body = client.get(url).content.decode()
    assert "北京群客户" in body and "138****1111" in body and "13800001111" not in body
    assert "其他投顾的客户" in body and "同事的客户" not in body  # a colleague's client stays hidden
    assert "待邀请客户" in body and 'data-testid="group-health-chart"' in body
    assert 'data-testid="group-edit"' not in body  # advisors do not edit purpose/audience
    for viewer in (branch_manager, operator):
        client.force_login(viewer)
        body = client.get(url).content.decode()
        assert 'data-testid="group-edit"' in body and "同事的客户" in body


def test_invite_from_the_gap_creates_tasks(client, groups, advisor):
    client.force_login(advisor)
    url = reverse("groups:invite", args=[groups["mine"].pk])
    response = client.post(url, {"customers": [groups["audience_only"].pk]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "已创建 1 个邀请任务" in response.content.decode() and "已派邀请任务" in response.content.decode()
    task = Task.objects.get(source="group_invite")
    assert task.customer == groups["audience_only"] and task.assignee == advisor
    response = client.post(url, {}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "请选择要邀请的客户" in response.content.decode()
    # ids outside the gap are ignored
    client.post(url, {"customers": [groups["shanghai"].members.get().customer_id]})
    assert Task.objects.count() == 1


def test_edit_purpose_and_audience(client, groups, branch_manager, advisor, other_branch_manager):
    url = reverse("groups:edit", args=[groups["mine"].pk])
    client.force_login(advisor)
    assert client.post(url, {"purpose": "vip"}).status_code == 404
    client.force_login(branch_manager)
    response = client.post(url, {"purpose": "vip", "audience": ""})
    assert response.status_code == 302
    groups["mine"].refresh_from_db()
    assert groups["mine"].purpose == "vip" and groups["mine"].audience is None
    foreign = segment_of(name="上海的客群", branch=other_branch_manager.branch)
    response = client.post(url, {"purpose": "fund", "audience": foreign.pk})
    assert response.status_code == 400
    groups["mine"].refresh_from_db()
    assert groups["mine"].purpose == "vip"
    response = client.post(url, {"purpose": "fund", "audience": groups["segment"].pk})
    groups["mine"].refresh_from_db()
    assert groups["mine"].purpose == "fund" and groups["mine"].audience == groups["segment"]


def test_invite_all_asks_first_with_the_creators_own_count(client, advisor, same_branch_advisor, branch_manager,
                                                           make_staff):
    left = make_staff("advisor_left", "advisor", "BJ01", employee_code="E9401")
    mine = [CustomerFactory(advisor=advisor) for _ in range(3)]
    colleague = [CustomerFactory(advisor=same_branch_advisor) for _ in range(2)]
    member = CustomerFactory(advisor=advisor)
    orphan = CustomerFactory(advisor=left)  # their advisor has left: the task creator refuses them
    left.is_active = False
    left.save(update_fields=["is_active"])
    group = make_group(advisor=advisor, name="全员邀请群", purpose="fund",
                       audience=segment_of(*mine, *colleague, member, orphan), members=[member])
    url = reverse("groups:invite", args=[group.pk])
    client.force_login(branch_manager)

    asked = client.post(url, {"all": "1"}, HTTP_HX_REQUEST="true")
    body = asked.content.decode()
    assert asked.status_code == 200 and 'data-testid="invite-confirm"' in body
    assert "将创建 5 个邀请任务，分派给 2 位投顾" in body and "没有（可用的）投顾 1 人" in body
    assert 'name="expected" value="5"' in body and "确认创建 5 个任务" in body
    assert not Task.objects.filter(source="group_invite").exists()  # asking creates nothing

    # without htmx the whole page asks the same
    page = client.post(url, {"all": "1"}).content.decode()
    assert 'data-testid="invite-confirm"' in page and "将创建 5 个邀请任务" in page
    assert not Task.objects.filter(source="group_invite").exists()

    # more tasks now than the confirmation showed (the gap grew meanwhile): ask again, create nothing
    stale = client.post(url, {"all": "1", "confirmed": "1", "expected": "4"}, HTTP_HX_REQUEST="true")
    assert 'data-testid="invite-confirm-changed"' in stale.content.decode()
    assert not Task.objects.filter(source="group_invite").exists()

    done = client.post(url, {"all": "1", "confirmed": "1", "expected": "5"}, HTTP_HX_REQUEST="true")
    assert "已创建 5 个邀请任务" in done.content.decode()
    tasks = Task.objects.filter(source="group_invite")
    assert tasks.count() == 5 and set(tasks.values_list("assignee_id", flat=True)) == {advisor.pk, same_branch_advisor.pk}
    again = client.post(url, {"all": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert "将创建 0 个邀请任务" in again and "disabled" in again[again.index("invite-confirm-yes"):][:200]
