"""An operator builds a journey in Chromium: creates it, adds a wait and a message step and an A/B branch in the
flow editor without a page reload, publishes, and sees it live in the list; then the results page shows what
the engine did. Screenshots of the editor and the results go to test-artifacts/ (and /tmp/helpers/sopui/)."""

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from customers.models import Customer
from sop.engine import enroll_queryset
from sop.models import Journey, MessageTemplate, TemplateVersion, Unsubscribe
from sop.tests.test_engine import NOON, drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/helpers/sopui")


def _shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if SHOTS.is_dir():
        shutil.copy(path, SHOTS / name)


def _add(page, after, arm, step_type):
    page.click(f"[data-testid=add-step][data-after='{after}'][data-arm='{arm}']")
    page.click(f"[data-testid=add-type-{step_type}]")
    page.wait_for_selector(f"[data-testid=step-form][data-step-type={step_type}]")
    return page.locator(f"[data-testid=step-form][data-step-type={step_type}]")


def test_operator_builds_publishes_and_reads_results(page, login, operator, provider, client_of):
    template = MessageTemplate.objects.create(name="开户欢迎短信", channel="sms")
    TemplateVersion.objects.create(template=template, number=1, status="approved",
                                   body="{name}您好，欢迎开户！我是您的投顾{advisor}，有问题随时联系。")
    login(operator)
    page.click("[data-nav=sop]")
    page.click("[data-testid=journey-new]")
    page.fill("#id_name", "新开户客户欢迎")
    page.fill("#id_description", "开户后发欢迎短信，A/B 测试是否加投顾回访")
    page.select_option("#id_trigger_type", "manual")
    page.click("[data-testid=journey-create-submit]")
    page.wait_for_selector("[data-testid=step-card][data-step-id=wait_1]")
    page.evaluate("window.sameDocument = true")

    form = _add(page, "wait_1", "next", "wait")
    form.locator("[name=wait_value]").fill("2")
    form.locator("[name=wait_unit]").select_option("1440")
    form.locator("[data-testid=step-save]").click()
    page.wait_for_selector("[data-testid=step-card][data-step-id=wait_2] >> text=等待 2 天")

    form = _add(page, "wait_2", "next", "sms")
    assert form.locator("[name=wait_value]").count() == 0
    form.locator("[name=template]").select_option(str(template.pk))
    form.locator("[data-testid=step-save]").click()
    page.wait_for_selector("[data-testid=step-card][data-step-id=sms_1] >> text=开户欢迎短信")

    form = _add(page, "sms_1", "next", "branch")
    form.locator("[name=kind]").select_option("ab")
    assert form.locator("[name=within_hours]").is_hidden() and form.locator("[name=percent_a]").is_visible()
    form.locator("[name=percent_a]").fill("50")
    form.locator("[data-testid=step-save]").click()
    page.wait_for_selector("[data-testid=flow-branches] >> text=B 组 50%")
    form = _add(page, "branch_1", "else", "task")
    form.locator("[name=title]").fill("电话回访：欢迎新客户")
    form.locator("[name=executor]").select_option("advisor")
    form.locator("[data-testid=step-save]").click()
    page.wait_for_selector("[data-testid=step-card][data-step-id=task_1]")

    # a bad edit shows the path beside the step and saves nothing
    page.click("[data-testid=step-card][data-step-id=wait_2] [data-testid=step-open]")
    page.locator("#slot-step-wait_2 [name=wait_value]").fill("200")
    page.click("#slot-step-wait_2 [data-testid=step-save]")
    page.wait_for_selector("#slot-step-wait_2 [data-testid=step-error] >> text=$.steps[1].minutes")
    _shot(page, "sop-journey-step-error.png")
    page.click("#slot-step-wait_2 [data-testid=step-cancel]")
    page.wait_for_selector("[data-testid=step-card][data-step-id=wait_2] >> text=等待 2 天")
    assert page.evaluate("window.sameDocument") is True, "the editor reloaded the page"
    journey = Journey.objects.get(name="新开户客户欢迎")
    assert [s["id"] for s in journey.draft["steps"]] == ["wait_1", "wait_2", "sms_1", "branch_1", "task_1"]
    _shot(page, "sop-journey-editor.png")

    page.click("[data-testid=journey-publish]")
    page.wait_for_selector("text=已发布第 1 版")
    page.click("[data-nav=sop]")
    row = page.locator(f"[data-testid=journey-row][data-journey-id='{journey.pk}']")
    row.locator("[data-testid=journey-status][data-status=live]").wait_for()
    assert "v1" in row.inner_text()
    _shot(page, "sop-journey-list.png")

    # the engine runs it for a few clients; the results page shows the funnel
    customers = [client_of(i) for i in range(12)]
    Unsubscribe.objects.create(customer=customers[0], channel="sms")
    journey.refresh_from_db()
    enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="t", now=NOON)
    for moment in (NOON, NOON + timedelta(hours=2), NOON + timedelta(days=2, hours=3)):
        while drain(moment):
            pass
    page.goto(f"/sop/journeys/{journey.pk}/results/")
    page.wait_for_selector("[data-testid=funnel-chart][data-rendered='1'] canvas")
    assert "客户已退订该渠道：1" in page.locator("[data-testid=funnel-row][data-step-id=sms_1]").inner_text()
    _shot(page, "sop-journey-results.png")
