"""用户与权限 in Chromium: an admin creates an advisor, who logs in with the one-time password and must choose their
own; the advisor gets locked out by failed logins and the admin unlocks them; the admin deactivates the advisor and
is offered the 离职继承 with the advisor preselected."""

import pytest
from django.conf import settings

from conftest import ARTIFACTS
from core.models import AuditLog, User
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.browser
NEW_PASSWORD = "Zhao-Yun-Own-Pass-73"


def _login_form(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_admin_creates_an_advisor_who_changes_the_password_then_unlocks_and_deactivates_them(
        page, login, browser, live_server, admin_user, advisor):
    login(admin_user)
    page.click("[data-nav=users]")
    page.click("[data-testid=staff-new]")
    page.fill("#id_username", "zhao_yun")
    page.fill("#id_display_name", "赵云")
    page.select_option("#id_role", "advisor")
    page.select_option("#id_branch", "BJ01")
    page.fill("#id_employee_code", "E7001")
    page.click("[data-testid=staff-save]")
    one_time = page.locator("[data-testid=one-time-password-value]").inner_text().strip()
    assert len(one_time) >= 10

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=live_server.url)
    theirs = context.new_page()
    theirs.set_default_timeout(10_000)
    try:
        # first login with the one-time password: every page leads to the password change until it is done
        _login_form(theirs, "zhao_yun", one_time)
        theirs.wait_for_url("**/accounts/password/")
        assert theirs.locator("[data-testid=must-change-password]").is_visible()
        theirs.goto("/customers/")
        theirs.wait_for_url("**/accounts/password/")
        theirs.fill("#id_old_password", one_time)
        theirs.fill("#id_new_password1", NEW_PASSWORD)
        theirs.fill("#id_new_password2", NEW_PASSWORD)
        theirs.click("[data-testid=password-save]")
        theirs.wait_for_url("**/accounts/password/done/")
        theirs.click("[data-testid=continue-home]")
        assert theirs.locator("[data-nav=customers]").is_visible()
        assert not User.objects.get(username="zhao_yun").must_change_password
        theirs.click("[data-testid=logout]")
        theirs.wait_for_url("**/accounts/login/")

        # too many failures lock the account; the admin sees since when and lifts the lock
        for _ in range(settings.AXES_FAILURE_LIMIT):
            _login_form(theirs, "zhao_yun", "not-my-password")
        _login_form(theirs, "zhao_yun", NEW_PASSWORD)
        assert theirs.locator("[data-testid=locked-out]").is_visible()
        page.click("[data-nav=users]")
        locked_row = page.locator('[data-locked="zhao_yun"]')
        assert locked_row.locator("[data-testid=locked-since]").inner_text().startswith("20")
        page.click("[data-testid=unlock-zhao_yun]")
        page.wait_for_selector("text=已解除登录锁定")
        assert page.locator('[data-locked="zhao_yun"]').count() == 0
        _login_form(theirs, "zhao_yun", NEW_PASSWORD)
        theirs.wait_for_selector("[data-nav=customers]")
    finally:
        context.close()

    # the advisor has clients: deactivating offers 离职继承 with the advisor preselected
    zhao = User.objects.get(username="zhao_yun")
    for _ in range(3):
        CustomerFactory(advisor=zhao)
    page.goto("/settings/users/?q=zhao")
    page.click('[data-staff="zhao_yun"] [data-testid=staff-link]')
    assert page.locator("[data-testid=holdings-clients]").inner_text() == "3"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=staff-deactivate]")
    page.wait_for_selector("[data-testid=handover]")
    assert page.locator("[data-testid=staff-status]").inner_text() == "已停用"
    assert "3 位客户" in page.locator("[data-testid=handover]").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "staff-deactivated-handover.png"), full_page=True)
    page.click("[data-testid=handover-link]")
    page.wait_for_selector("[data-testid=transfer-form]")
    assert page.locator("#id_from_advisor").input_value() == str(zhao.pk)
    assert page.locator("input[name=kind][value=resigned]").is_checked()

    actions = set(AuditLog.objects.filter(target_id="zhao_yun").values_list("action", flat=True))
    assert {"staff.create", "staff.password_change", "auth.lockout", "staff.unlock", "staff.deactivate"} <= actions
