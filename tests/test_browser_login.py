"""Each role logs in through the real form in Chromium and sees exactly its navigation."""

import pytest
from playwright.sync_api import expect

from conftest import ARTIFACTS

pytestmark = pytest.mark.browser

# what each role's sidebar must show (keys of core.navigation.NAV_ITEMS whose pages exist)
EXPECTED_NAV = {
    "advisor": {"home", "customers", "tasks", "groups", "dashboard"},
    "branch_manager": {"home", "customers", "tasks", "tiers", "segments", "groups", "transfers", "dashboard",
                       "analyses"},
    "hq_manager": {"home", "customers", "tiers", "segments", "dashboard", "analyses"},
    "operator": {"home", "customers", "tags", "tiers", "segments", "sop", "groups", "wecom", "contact_ways",
                 "dashboard", "analyses"},
    "compliance": {"home", "customers", "compliance"},
    "admin": {"home", "customers", "tasks", "tags", "tiers", "segments", "sop", "groups", "wecom", "contact_ways",
              "transfers", "dashboard", "analyses", "compliance", "integrations", "settings", "users",
              "custom_fields"},
}


@pytest.mark.parametrize("role", sorted(EXPECTED_NAV))
def test_each_role_logs_in_and_sees_its_navigation(page, login, make_staff, role):
    user = make_staff(f"u_{role}", role, "BJ01" if role in ("advisor", "branch_manager") else None)
    login(user)
    shown = set(page.locator("[data-nav]").evaluate_all("els => els.map(e => e.dataset.nav)"))
    assert shown == EXPECTED_NAV[role]
    assert page.locator("[data-testid=user-name]").inner_text() == user.username
    ARTIFACTS.mkdir(exist_ok=True)
    nav_png = page.locator("aside").screenshot(path=str(ARTIFACTS / f"nav-{role}.png"))
    assert len(nav_png) > 1000
    page.click("[data-testid=logout]")
    page.wait_for_url("**/accounts/login/")
    assert page.locator("#id_username").is_visible()


def test_wrong_password_then_lockout_in_the_browser(page, advisor):
    from django.conf import settings

    for _ in range(settings.AXES_FAILURE_LIMIT):
        page.goto("/accounts/login/")
        page.fill("#id_username", advisor.username)
        page.fill("#id_password", "nope")
        page.click("button[type=submit]")
    page.goto("/accounts/login/")
    page.fill("#id_username", advisor.username)
    page.fill("#id_password", "correct-horse-42")
    page.click("button[type=submit]")
    assert page.locator("[data-testid=locked-out]").is_visible()


def test_language_switch_to_english(page, login, advisor):
    login(advisor)
    assert page.locator("[data-nav=home]").inner_text() == "工作台"
    page.select_option("[data-testid=language-form] select", "en")
    # the choice submits the form and the page reloads: wait for the reloaded page, however long a loaded machine takes
    expect(page.locator("[data-nav=home]")).to_have_text("Workbench", timeout=15_000)
