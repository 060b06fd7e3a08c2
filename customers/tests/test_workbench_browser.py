"""The advisor's day in Chromium: list and filters, the 360° page, reveal with audit, notes, tasks."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import ARTIFACTS
from core.models import AuditLog
from customers.models import Task
from customers.tests.factories import CustomerFactory, TaskFactory, TradeFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def book(advisor, other_branch_advisor):
    customers = [CustomerFactory(advisor=advisor, name=f"测试客户{i:02d}", total_assets=1000 * i,
                                 risk_level="C4" if i % 3 == 0 else "C2", mobile=f"1380000{i:04d}")
                 for i in range(60)]
    CustomerFactory(advisor=other_branch_advisor, name="别人的客户")
    return customers


def test_list_filters_and_load_more(page, login, advisor, book):
    login(advisor)
    page.click("[data-nav=customers]")
    page.wait_for_selector("[data-testid=customer-table]")
    assert page.inner_text("[data-testid=customer-count]") == "共 60 位客户"
    assert page.locator("[data-testid=customer-row]").count() == 50
    assert "别人的客户" not in page.content()
    page.click("[data-testid=load-more]")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=customer-row]').length === 60")
    page.select_option("#id_risk_level", "C4")
    page.wait_for_function("() => document.querySelector('[data-testid=customer-count]')?.innerText === '共 20 位客户'")
    assert "risk_level=C4" in page.url  # the filter is in the address, so it can be shared and reloaded
    page.fill("#id_q", "13800000033")  # searches on Enter (a POST), not per keystroke
    page.press("#id_q", "Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=customer-count]')?.innerText === '共 1 位客户'")
    assert page.locator("[data-testid=customer-row] a").first.inner_text() == "测试客户33"
    assert "13800000033" not in page.url and "risk_level=C4" in page.url
    assert AuditLog.objects.filter(action="customer.pii_search", actor=advisor).count() == 1
    page.screenshot(path=str(ARTIFACTS / "customer-list.png"), full_page=True)


def test_360_reveal_is_audited_and_note_is_saved(page, login, advisor, book):
    customer = book[12]
    TradeFactory(customer=customer, traded_at=timezone.now() - timedelta(days=40))
    TradeFactory(customer=customer, traded_at=timezone.now())
    login(advisor)
    page.goto(f"/customers/c/{customer.external_id}/")
    assert page.inner_text("[data-testid=pf-mobile]").startswith("138****0012")
    page.click("[data-testid=reveal-mobile]")
    page.fill("[data-testid=reveal-reason-mobile]", "客户来电核实身份")
    page.click("#pf-mobile button[type=submit]")
    page.wait_for_selector("[data-testid=revealed]")
    assert page.inner_text("[data-testid=revealed]") == "13800000012"
    audit = AuditLog.objects.get(action="customer.reveal")
    assert audit.actor == advisor and audit.reason == "客户来电核实身份" and audit.target_id == customer.external_id
    page.fill("[data-testid=note-form] textarea", "客户想了解科创板开通条件")
    page.click("[data-testid=note-form] button")
    page.wait_for_selector("[data-testid=notes] >> text=客户想了解科创板开通条件")
    page.wait_for_function("() => document.querySelector('#trade-chart canvas') !== null")
    page.screenshot(path=str(ARTIFACTS / "customer-360.png"), full_page=True)


def test_complete_a_task_from_the_workbench(page, login, advisor, book):
    task = TaskFactory(customer=book[0], assignee=advisor, title="回访开户未入金客户",
                       due_at=timezone.now() - timedelta(hours=3), source_label="SOP：开户未入金召回")
    login(advisor)
    row = page.locator(f"#task-{task.pk}")
    assert "逾期" in row.inner_text() and "SOP：开户未入金召回" in row.inner_text()
    row.locator("button").click()  # no outcome chosen: the browser refuses before anything is sent
    assert row.locator("select").evaluate("el => el.validity.valueMissing") is True
    assert Task.objects.get(pk=task.pk).status == Task.Status.OPEN
    row.locator("select").select_option("interested")
    row.locator("input[name=note]").fill("约了下周面谈")
    row.locator("button").click()
    page.wait_for_selector(f"#task-{task.pk} [data-testid=task-done]")
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and task.outcome == "interested" and task.outcome_note == "约了下周面谈"
    page.screenshot(path=str(ARTIFACTS / "workbench.png"), full_page=True)


def test_quick_note_from_the_list(page, login, advisor, book):
    from customers.models import Note

    login(advisor)
    page.goto("/customers/")
    row = page.locator(f"[data-external-id={book[59].external_id}]")
    row.locator("[data-testid=quick-note] summary").click()
    row.locator("input[name=body]").fill("电话沟通，客户考虑定投")
    row.locator("[data-testid=quick-note] button").click()
    row.locator("[data-testid=quick-note-result]").wait_for()
    assert row.locator("[data-testid=quick-note-result]").inner_text() == "已记录"
    assert Note.objects.get(customer=book[59]).body == "电话沟通，客户考虑定投"
