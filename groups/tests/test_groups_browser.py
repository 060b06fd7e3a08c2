from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import ARTIFACTS
from customers.models import Task
from customers.tests.factories import CustomerFactory
from groups.models import GroupDailyStat
from groups.tests.factories import make_group
from groups.tests.test_services import segment_of

pytestmark = pytest.mark.browser


def test_advisor_sees_group_health_and_invites_from_the_audience_gap(page, login, advisor):
    inside = CustomerFactory(advisor=advisor, name="群内客户")
    missing = [CustomerFactory(advisor=advisor, name=f"待入群客户{i}") for i in range(2)]
    group = make_group(advisor=advisor, name="北京基金交流群", purpose="fund", audience=segment_of(inside, *missing),
                       members=[inside])
    today = timezone.localdate()
    GroupDailyStat.objects.bulk_create([
        GroupDailyStat(group=group, day=today - timedelta(days=d), members=10 + d, clients=8, joins=d % 3, leaves=d % 2)
        for d in range(1, 15)])

    login(advisor)
    page.click("[data-nav=groups]")
    page.click("[data-testid=group-link] >> text=北京基金交流群")
    page.wait_for_selector("[data-testid=group-health-chart][data-rendered='1']")
    page.wait_for_selector("[data-testid=group-health-chart] canvas")
    page.wait_for_selector("[data-testid=gap-total] >> text=2")
    row = page.locator(f"[data-testid=gap-list] tr[data-customer={missing[0].external_id}]")
    row.locator("[data-testid=invite-one]").click()
    page.wait_for_selector("[data-testid=invite-result] >> text=已创建 1 个邀请任务")
    row.locator("[data-testid=invite-open]").wait_for()
    task = Task.objects.get(source="group_invite")
    assert task.customer == missing[0] and task.assignee == advisor and task.title == "邀请客户加入群「北京基金交流群」"

    page.click("[data-testid=invite-all]")  # the other one; the one already invited is skipped
    page.wait_for_selector("[data-testid=invite-confirm] >> text=将创建 1 个邀请任务")  # asked first
    assert Task.objects.filter(source="group_invite").count() == 1
    page.click("[data-testid=invite-confirm-yes]")
    page.wait_for_selector("[data-testid=invite-result] >> text=已有未完成邀请任务 1 人")
    page.wait_for_selector("[data-testid=invite-result] >> text=已创建 1 个邀请任务")
    assert Task.objects.filter(source="group_invite").count() == 2
    page.screenshot(path=str(ARTIFACTS / "groups-detail.png"), full_page=True)
    page.click("[data-nav=tasks]")
    page.wait_for_selector("text=邀请客户加入群「北京基金交流群」")
