"""The advisor's prepared WeCom messages in the task inbox (copy, 标记已发送) and the client's
"SOP 旅程" panel."""

import pytest

from core.models import AuditLog
from customers.models import Task, Touch
from sop.models import StepRun
from sop.tests.test_content_compliance import _wecom_journey

pytestmark = pytest.mark.django_db


@pytest.fixture
def prepared(sop_kit, client_of):
    customer = client_of(1, name="周企微", wecom_external_userid="wm_zhou")
    _wecom_journey(sop_kit, [customer])
    run = StepRun.objects.get(enrollment__customer=customer)
    task = Task.objects.get(pk=run.detail["task_id"])
    return {"customer": customer, "run": run, "task": task}


def test_the_inbox_shows_the_prepared_text_with_copy_and_mark_sent(client, advisor, prepared):
    client.force_login(advisor)
    html = client.get("/customers/tasks/").content.decode()
    assert "周企微您好，有问题随时找我。" in html
    assert 'data-testid="sop-message-copy"' in html
    assert f'hx-post="/sop/tasks/{prepared["task"].pk}/sent/"' in html
    assert "周企微您好" in client.get("/").content.decode()  # the workbench shows it too


def test_mark_sent_marks_touch_step_and_task_together_and_twice_is_once(client, advisor, prepared):
    client.force_login(advisor)
    url = f"/sop/tasks/{prepared['task'].pk}/sent/"
    response = client.post(url)
    assert response.status_code == 200 and 'data-testid="sop-message-sent"' in response.content.decode()
    run = StepRun.objects.get(pk=prepared["run"].pk)
    touch = Touch.objects.get(pk=run.touch_id)
    task = Task.objects.get(pk=prepared["task"].pk)
    assert run.outcome == "sent" and (touch.status, touch.staff) == ("sent", advisor)
    assert (task.status, task.outcome) == ("done", "reached")
    first = (touch.occurred_at, task.completed_at)
    assert client.post(url).status_code == 200
    touch.refresh_from_db()
    task.refresh_from_db()
    assert (touch.occurred_at, task.completed_at) == first
    assert AuditLog.objects.filter(action="sop.wecom_marked_sent").count() == 1
    prepared["customer"].refresh_from_db()
    assert prepared["customer"].last_contact_at is not None


def test_skip_records_the_message_as_not_sent_and_releases_the_cap(client, advisor, prepared):
    client.force_login(advisor)
    url = f"/sop/tasks/{prepared['task'].pk}/skip/"
    response = client.post(url, {"note": "客户出差"})
    assert response.status_code == 200 and 'data-testid="sop-message-skipped"' in response.content.decode()
    run = StepRun.objects.get(pk=prepared["run"].pk)
    task = Task.objects.get(pk=prepared["task"].pk)
    assert run.outcome == "skipped" and Touch.objects.get(pk=run.touch_id).status == "failed"
    assert (task.status, task.outcome, task.outcome_note) == ("done", "not_reached", "客户出差")
    assert client.post(url).status_code == 200  # twice is once
    assert AuditLog.objects.filter(action="sop.wecom_skipped").count() == 1
    response = client.post(f"/sop/tasks/{prepared['task'].pk}/sent/")
    assert response.status_code == 400 and "已标记为不发送" in response.content.decode()
    assert StepRun.objects.get(pk=run.pk).outcome == "skipped"


def test_another_advisor_gets_404_and_nothing_changes(client, same_branch_advisor, other_branch_advisor, prepared):
    for user in (same_branch_advisor, other_branch_advisor):
        client.force_login(user)
        assert client.post(f"/sop/tasks/{prepared['task'].pk}/sent/").status_code == 404
    assert StepRun.objects.get(pk=prepared["run"].pk).outcome == "prepared"
    assert Task.objects.get(pk=prepared["task"].pk).status == "open"


def test_the_advisors_branch_manager_may_mark_it(client, branch_manager, advisor, prepared):
    client.force_login(branch_manager)
    assert client.post(f"/sop/tasks/{prepared['task'].pk}/sent/").status_code == 200
    touch = Touch.objects.get(pk=prepared["run"].touch_id)
    assert touch.status == "sent" and touch.staff == advisor  # sent from the advisor's WeCom


def test_a_task_that_is_not_an_sop_message_is_404(client, advisor, client_of):
    from django.utils import timezone

    from customers.tests.factories import TaskFactory

    task = TaskFactory(customer=client_of(2), assignee=advisor, due_at=timezone.now())
    client.force_login(advisor)
    assert client.post(f"/sop/tasks/{task.pk}/sent/").status_code == 404


def test_the_customer_page_lists_the_clients_journeys(client, advisor, prepared, sop_kit, client_of):
    client.force_login(advisor)
    html = client.get(f"/customers/c/{prepared['customer'].external_id}/").content.decode()
    assert 'data-testid="sop-journey-row"' in html and "新客企微问候" in html and "已备好，待投顾发送" in html
    blocked = client_of(3, name="吴无企微")
    _wecom_journey(sop_kit, [blocked], name="流失召回")
    html = client.get(f"/customers/c/{blocked.external_id}/").content.decode()
    assert "流失召回" in html and "客户不是企业微信好友" in html
    html = client.get(f"/customers/c/{client_of(4).external_id}/").content.decode()
    assert "该客户还没有进入任何 SOP 旅程" in html
