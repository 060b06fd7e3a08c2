"""In Chromium: an operator's template is stopped by the lint, fixed, approved by compliance in the
queue; the journey blocks one client and prepares a WeCom message the advisor marks sent."""

from pathlib import Path

import pytest

from customers.models import Customer, Task, Touch
from sop.engine import enroll_queryset
from sop.models import MessageTemplate, StepRun, TemplateVersion
from sop.tests.test_engine import NOON, drain

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp/helpers/sopcontent")


def _logout(page):
    page.click("[data-testid=logout]")
    page.wait_for_url("**/accounts/login/**")


def test_template_lint_approval_blocked_list_calendar_and_mark_sent(page, login, operator, compliance, advisor,
                                                                     client_of):
    SHOTS.mkdir(parents=True, exist_ok=True)
    login(operator)
    page.goto("/sop/templates/new/")
    page.fill("#id_name", "新客企微问候")
    page.select_option("#id_channel", "wecom")
    page.fill("[data-testid=template-body]", "{name}您好，我是{advisor}，这只基金保本，欢迎咨询。")
    page.wait_for_selector("[data-testid=lint-finding] >> text=含禁用表述「保本」")  # live, before saving
    page.click("[data-testid=template-submit]")
    page.wait_for_selector("[data-testid=field-error-body]")
    assert "保本" in page.inner_text("[data-testid=field-error-body]")
    assert page.inner_text("[data-testid=lint-mark]") == "保本"
    page.screenshot(path=str(SHOTS / "template-lint-error.png"), full_page=True)
    assert not TemplateVersion.objects.exists()
    page.fill("[data-testid=template-body]", "{name}您好，我是{advisor}，有问题随时找我。")
    page.wait_for_selector("[data-testid=lint-ok]")
    page.click("[data-testid=template-submit]")
    page.wait_for_selector("[data-testid=version-row] >> text=待合规审核")
    _logout(page)

    login(compliance)
    page.click("[data-nav=compliance]")
    page.click("[data-testid=sop-compliance-links] >> text=模板审核")
    page.wait_for_selector("[data-testid=approval-item] >> text=新客企微问候")
    page.screenshot(path=str(SHOTS / "approval-queue.png"), full_page=True)
    page.click("[data-testid=review-approve]")
    page.wait_for_selector("[data-testid=queue-empty]")
    assert "新客企微问候 v1" in page.inner_text("[data-testid=review-history]")
    template = MessageTemplate.objects.get()
    assert template.approved_version().reviewed_by == compliance

    from sop.services import journey_create, journey_publish

    journey = journey_create(actor=operator, name="新客企微问候旅程", definition={
        "trigger": {"type": "manual"}, "start": "hello",
        "steps": [{"id": "hello", "type": "wecom_message", "template": template.pk, "executor": "advisor"}]})
    journey_publish(actor=operator, journey=journey)
    journey.refresh_from_db()
    ready = client_of(1, name="周企微", wecom_external_userid="wm_zhou")
    no_wecom = client_of(2, name="赵无企微")
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[ready.pk, no_wecom.pk]),
                    trigger_key="browser", now=NOON)
    drain(NOON)
    page.goto("/sop/compliance/blocked/")
    page.wait_for_selector("[data-testid=blocked-row] >> text=客户不是企业微信好友")
    assert "赵无企微" not in page.content()
    page.screenshot(path=str(SHOTS / "blocked-touches.png"), full_page=True)
    page.click("[data-testid=sop-content-tabs] >> text=触达规则")
    page.wait_for_selector("[data-testid=caps-table]")
    page.screenshot(path=str(SHOTS / "guards.png"), full_page=True)
    page.click("[data-testid=sop-content-tabs] >> text=禁用表述")
    page.wait_for_selector("[data-testid=phrase-row] >> text=保本")
    page.screenshot(path=str(SHOTS / "phrases.png"), full_page=True)
    _logout(page)

    login(operator)
    page.goto("/sop/calendar/?month=2026-12")
    page.wait_for_selector("[data-testid=calendar-warning]")
    page.click("[data-testid=day-2026-12-30]")  # a click fills the form with the day and the opposite state
    assert page.input_value("#id_day") == "2026-12-30" and page.input_value("#id_is_open") == "0"
    page.screenshot(path=str(SHOTS / "calendar.png"), full_page=True)
    _logout(page)

    login(advisor)
    page.click("[data-nav=tasks]")
    page.wait_for_selector("[data-testid=sop-message-text] >> text=周企微您好，我是advisor_a，有问题随时找我。")
    page.screenshot(path=str(SHOTS / "advisor-inbox.png"), full_page=True)
    page.click("[data-testid=wecom-mark-sent]")
    page.wait_for_selector("[data-testid=sop-message-sent]")
    run = StepRun.objects.get(enrollment__customer=ready)
    assert run.outcome == "sent" and Touch.objects.get(pk=run.touch_id).status == "sent"
    assert Task.objects.get(pk=run.detail["task_id"]).status == "done"
    page.goto(f"/customers/c/{ready.external_id}/#sop-journeys")
    page.wait_for_selector("[data-testid=sop-journey-row] >> text=新客企微问候旅程")
    page.locator("[data-testid=sop-journeys]").screenshot(path=str(SHOTS / "customer-journeys.png"))
