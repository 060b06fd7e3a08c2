"""The WeCom pages in a real browser against the sandbox: an operator starts a sync and watches it finish
without reloading, creates a contact way, resolves a contact of the review queue; a branch manager hands a
departing advisor's clients over. Screenshots go to /tmp/helpers/wecom/ (or test-artifacts/)."""

import os
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from customers.models import Customer, Touch
from customers.tests.factories import CustomerFactory
from integrations.wecom.models import ContactWay, ExternalContact, SyncRun, Transfer, TransferItem
from integrations.wecom.tasks_sync import wecom_sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("WECOM_SCREENSHOTS", ARTIFACTS))


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"wecom-{name}.png"), full_page=True)


@pytest.fixture
def corp(make_staff, wecom_sandbox):
    leaving = make_staff("advisor_leaving", "advisor", "BJ01", employee_code="E9301", wecom_userid="wx_leaving",
                         display_name="离职的李投顾")
    taking = make_staff("advisor_taking", "advisor", "BJ01", employee_code="E9302", wecom_userid="wx_taking",
                        display_name="接替的周投顾")
    for n in range(6):
        CustomerFactory(advisor=leaving, wecom_external_userid=f"wmB{n:03d}", mobile=f"1370000{n:04d}")
    CustomerFactory(advisor=taking, external_id="C-REVIEW-1", name="待关联的客户")
    wecom_sandbox.reseed_from_db()
    return {"leaving": leaving, "taking": taking, "sb": wecom_sandbox}


def test_operator_syncs_creates_a_contact_way_and_resolves_a_review_item(page, login, operator, corp):
    login(operator)
    page.click("[data-nav=wecom]")
    page.wait_for_selector("[data-testid=wecom-connection]")
    page.evaluate("window.__sameDocument = true")
    page.click("[data-testid=wecom-sync-all]")
    page.wait_for_selector("[data-testid=wecom-sync-queued]")
    page.evaluate("window.__sameDocument = true")
    shot(page, "1-sync-queued")
    # the worker of this test session does not see the sandbox settings: run the queued task's body here
    run = SyncRun.objects.get(pk=wecom_sync("all", f"manual:{operator.username}"))
    assert run.status == SyncRun.Status.DONE, run.error
    page.wait_for_selector(f"tr[data-run='{run.pk}'] [data-testid=run-status][data-status=done]")
    assert page.evaluate("window.__sameDocument === true")  # updated in place, no reload
    page.wait_for_selector("[data-testid=wecom-runs][data-polling='0']")
    unmatched = ExternalContact.objects.filter(match_status="unmatched", deleted_at=None).count()
    assert unmatched > 0
    page.wait_for_selector(f"[data-testid=wecom-unmatched] >> text={unmatched}")  # the counts above follow too
    page.wait_for_selector(f"[data-testid=wecom-match-counts] >> text=待人工关联 {unmatched}")
    shot(page, "2-sync-done")

    # a contact way for a channel, with a tag and a welcome message
    page.click("[data-nav=contact_ways]")
    page.click("[data-testid=contact-way-new]")
    page.fill("#id_name", "营业部讲座 12 月")
    page.fill("#id_channel", "seminar")
    page.fill("#id_campaign", "两融讲座")
    page.select_option("#id_advisor", label=page.locator("#id_advisor option", has_text="接替的周投顾").inner_text())
    page.select_option("#id_tags", label=page.locator("#id_tags option", has_text="两融意向").first.inner_text())
    page.fill("#id_welcome_message", "您好，我是您的投顾，欢迎来到讲座。")
    page.click("[data-testid=contact-way-submit]")
    way = ContactWay.objects.get()
    page.wait_for_url(f"**/integrations/wecom/contact-ways/{way.pk}/")
    assert way.config_id and way.advisor == corp["taking"]
    page.wait_for_selector(f"img[src='{way.qr_code}']")
    shot(page, "3-contact-way")

    # the review queue: link one unmatched contact to a customer by customer number
    page.goto("/integrations/wecom/")
    page.click("[data-testid=wecom-review-link]")
    contact = ExternalContact.objects.filter(match_status="unmatched").order_by("-updated_at", "-pk").first()
    total = ExternalContact.objects.filter(match_status="unmatched", deleted_at=None).count()
    page.wait_for_selector(f"[data-testid=review-total] >> text={total}")
    shot(page, "4-review-queue")
    page.fill(f"[data-testid=review-customer-{contact.pk}]", "NOPE-404")
    page.click(f"[data-testid=review-link-{contact.pk}]")
    page.wait_for_selector(f"[data-testid=review-error-{contact.pk}] >> text=没有找到唯一的客户")
    page.fill(f"[data-testid=review-customer-{contact.pk}]", "C-REVIEW-1")
    page.click(f"[data-testid=review-link-{contact.pk}]")
    page.wait_for_selector("text=已将")
    page.wait_for_selector(f"[data-testid=review-total] >> text={total - 1}")
    contact.refresh_from_db()
    assert contact.customer == Customer.objects.get(external_id="C-REVIEW-1") and contact.match_status == "matched"
    shot(page, "5-review-linked")


def test_branch_manager_hands_a_departing_advisors_clients_over(page, login, branch_manager, corp):
    from integrations.wecom import sync

    assert sync.wecom_sync_run(kind="contacts", requested_by="test").status == SyncRun.Status.DONE
    login(branch_manager)
    page.click("[data-nav=transfers]")
    page.click("[data-testid=transfer-new]")
    page.check("input[name=kind][value=resigned]")
    page.select_option("#id_from_advisor", label=page.locator("#id_from_advisor option", has_text="离职的李投顾").inner_text())
    page.select_option("#id_to_advisor", label=page.locator("#id_to_advisor option", has_text="接替的周投顾").inner_text())
    page.click("[data-testid=transfer-preview]")
    page.wait_for_selector("[data-testid=transfer-preview-list]")
    shot(page, "6-transfer-preview")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=transfer-start]")
    transfer_url = "**/integrations/wecom/transfers/*/"
    page.wait_for_url(transfer_url)
    transfer = Transfer.objects.get()
    page.wait_for_selector("[data-testid=transfer-items]")
    assert page.locator("[data-testid=transfer-items] tbody tr").count() == 6
    assert not Customer.objects.filter(advisor=corp["leaving"]).exists()
    assert set(TransferItem.objects.values_list("status", flat=True)) == {"waiting"}
    assert [c["kind"] for c in corp["sb"].state()["transfers"]] == ["resigned"]
    assert not Touch.objects.filter(source="wecom_deleted").exists()
    shot(page, "7-transfer-detail")
    assert transfer.created_by == branch_manager
