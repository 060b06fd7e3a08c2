"""The advisor's pages on a phone (390×844, touch): a menu button instead of the open sidebar, filters in a
drawer with chips, cards instead of wide tables, large touch targets, no sideways scrolling; and two desktop
checks at 1,440 px (the sidebar spans a long page, the audit log fits the screen).

Screenshots go to test-artifacts/mobile-*.png (and desktop-*.png)."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from conftest import ARTIFACTS
from customers.models import Customer, Note, Task
from customers.tests.factories import CustomerFactory, TaskFactory

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
TOUCH = 44  # px, the smallest comfortable touch target


@pytest.fixture
def page(request, browser, live_server):
    """A phone: 390×844, mobile viewport, touch. ``@pytest.mark.parametrize("page", ["en"], indirect=True)``
    sets the language cookie. (Named ``page`` so that conftest screenshots a failing test.)"""
    language = getattr(request, "param", None)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=1,
                                  locale="zh-CN", timezone_id="Asia/Shanghai", base_url=live_server.url)
    if language:
        context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def phone_login(page, user):
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-42")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=menu-toggle]")


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_no_sideways_scroll(page):
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    # a mobile viewport widens to fit content that does not: innerWidth must stay the phone's width too
    assert inner == PHONE["width"] and width <= inner, f"scrollWidth {width}, innerWidth {inner} at {page.url}"


def assert_in_first_screen(locator):
    box = locator.bounding_box()
    assert box is not None and box["y"] < PHONE["height"], f"{locator} starts at {box}"


def assert_touchable(locator):
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not shown"
    assert box["height"] >= TOUCH and box["width"] >= TOUCH, f"{locator} is {box['width']}×{box['height']}"


@pytest.fixture
def book(advisor, operator, compliance):
    """Eight clients with tiers, tags and contacts; three open tasks (overdue, today, tomorrow); and one
    prepared WeCom message from an SOP journey (an open sop_wecom task with its text)."""
    from sop.engine import enroll_queryset
    from sop.services import journey_create, journey_publish
    from sop.templates_lint import template_review, template_save
    from sop.tests.test_engine import NOON, drain
    from tagging.models import CustomerTier, Tag
    from tagging.services import customer_tag_add

    now = timezone.now()
    tags = ["margin_intent", "star_intent", "fund_interest", "novice", "contact_morning"]
    customers = []
    for i in range(8):
        customer = CustomerFactory(advisor=advisor, name=f"手机客户{i}", mobile=f"1380013{i:04d}",
                                   total_assets=900_000 - i * 1000, last_contact_at=now - timedelta(days=3 * i + 1))
        CustomerTier.objects.create(customer=customer, code="important_value" if i % 2 else "general_development",
                                    as_of=date.today())
        for code in tags[: i % 6]:
            customer_tag_add(customer=customer, tag=Tag.objects.get(code=code), source="manual", actor=advisor)
        customers.append(customer)
    tasks = [
        TaskFactory(customer=customers[0], assignee=advisor, title="回访开户未入金客户，确认是否需要帮助入金",
                    due_at=now - timedelta(hours=3), source_label="SOP：开户未入金召回"),
        TaskFactory(customer=customers[1], assignee=advisor, title="电话介绍两融开通条件",
                    due_at=now + timedelta(minutes=30), source_label="商机：两融意向"),
        TaskFactory(customer=customers[2], assignee=advisor, title="节后回访", due_at=now + timedelta(days=2)),
    ]
    version = template_save(actor=operator, template=None, name="新客企微问候", channel="wecom",
                            body="{name}您好，我是{advisor}，有问题随时找我。")
    template = template_review(actor=compliance, version=version, approve=True)
    journey = journey_create(actor=operator, name="新客企微问候旅程", definition={
        "trigger": {"type": "manual"}, "start": "hello",
        "steps": [{"id": "hello", "type": "wecom_message", "template": template.template_id, "executor": "advisor"}]})
    journey_publish(actor=operator, journey=journey)
    journey.refresh_from_db()
    wecom_client = CustomerFactory(advisor=advisor, name="周企微", mobile="13900130001", wecom_external_userid="wm_zhou",
                                   risk_assessed_at=NOON.date() - timedelta(days=30),
                                   total_assets=1, last_contact_at=now - timedelta(days=60))
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=wecom_client.pk),
                    trigger_key="mobile", now=NOON)
    drain(NOON)
    wecom_task = Task.objects.get(customer=wecom_client, status=Task.Status.OPEN)
    return {"customers": customers, "tasks": tasks, "wecom_task": wecom_task, "wecom_client": wecom_client}


def test_menu_button_opens_navigation_language_scope_and_logout(page, advisor, book):
    phone_login(page, advisor)
    assert_no_sideways_scroll(page)
    nav = page.locator("[data-nav=customers]")
    assert not nav.is_visible() and not page.locator("[data-testid=logout]").is_visible()  # closed: no 260 px sidebar
    toggle = page.locator("[data-testid=menu-toggle]")
    assert_touchable(toggle)
    search = page.locator("[data-testid=topbar-search] input[name=q]")
    assert search.is_visible() and search.bounding_box()["width"] > 300 and search.bounding_box()["height"] >= TOUCH
    toggle.tap()
    nav.wait_for(state="visible")
    page.locator("[data-testid=logout]").wait_for(state="visible")
    page.wait_for_timeout(400)  # the collapse animation
    assert_no_sideways_scroll(page)
    for target in ("[data-nav=home]", "[data-nav=customers]", "[data-nav=tasks]",
                   "[data-testid=language-form] select", "[data-testid=logout]"):
        assert_touchable(page.locator(target))
    scope = page.locator("[data-testid=scope]")
    assert scope.is_visible() and "BJ01" in scope.inner_text()
    language = page.locator("[data-testid=language-form] select").bounding_box()
    assert language["x"] + language["width"] <= PHONE["width"]  # not cut off
    shot(page, "mobile-menu")
    nav.tap()
    page.wait_for_url("**/customers/")
    assert not page.locator("[data-nav=customers]").is_visible()  # the new page starts with the menu closed

    search = page.locator("[data-testid=topbar-search] input[name=q]")  # the top bar's search: name, Enter
    search.fill("周企微")
    search.press("Enter")
    page.wait_for_selector("[data-testid=customer-count] >> text=共 1 位客户")
    assert page.locator("[data-testid=customer-row] .c-name-link").inner_text() == "周企微"

    page.locator("[data-testid=menu-toggle]").tap()  # the language picker works from the menu
    page.locator("[data-testid=language-form] select").select_option("en")
    page.wait_for_selector("[data-testid=menu-toggle]")
    page.locator("[data-testid=menu-toggle]").tap()
    page.locator("[data-nav=home]").wait_for(state="visible")
    assert page.locator("[data-nav=home]").inner_text() == "Workbench"
    page.locator("[data-testid=logout]").tap()
    page.wait_for_url("**/accounts/login/**")


def test_workbench_complete_a_task_and_mark_a_wecom_message_sent(page, advisor, book):
    phone_login(page, advisor)
    page.goto("/")
    assert_no_sideways_scroll(page)
    first = page.locator("[data-testid=task-row]").first
    assert_in_first_screen(first)
    shot(page, "mobile-workbench")

    overdue = page.locator(f"#task-{book['tasks'][0].pk}")
    title = overdue.locator(".t-title-text")
    assert title.bounding_box()["width"] > 250  # the title reads across the card, not two characters a line
    outcome = overdue.locator("select[name=outcome]")
    assert outcome.bounding_box()["width"] > 300  # the outcome dropdown spans the card
    assert_touchable(outcome)
    done = overdue.locator("button[type=submit]")
    assert_touchable(done)
    outcome.select_option("interested")
    overdue.locator("input[name=note]").fill("约了周五面谈")
    done.tap()
    page.wait_for_selector(f"#task-{book['tasks'][0].pk} [data-testid=task-done]")
    task = Task.objects.get(pk=book["tasks"][0].pk)
    assert task.status == Task.Status.DONE and task.outcome == "interested" and task.outcome_note == "约了周五面谈"

    wecom = page.locator(f"#task-{book['wecom_task'].pk}")
    assert "周企微您好" in wecom.locator("[data-testid=sop-message-text]").inner_text()
    for action in ("[data-testid=wecom-mark-sent]", "[data-testid=wecom-skip]", "[data-testid=sop-message-copy]"):
        assert_touchable(wecom.locator(action))
    wecom.locator("[data-testid=wecom-mark-sent]").tap()
    page.wait_for_selector(f"#task-{book['wecom_task'].pk} [data-testid=sop-message-sent]")
    assert Task.objects.get(pk=book["wecom_task"].pk).status == Task.Status.DONE
    assert_no_sideways_scroll(page)
    shot(page, "mobile-workbench-done")


def test_task_inbox_cards_and_complete(page, advisor, book):
    phone_login(page, advisor)
    page.locator("[data-testid=menu-toggle]").tap()
    page.locator("[data-nav=tasks]").tap()
    page.wait_for_url("**/customers/tasks/")
    assert_no_sideways_scroll(page)
    rows = page.locator("[data-testid=task-row]")
    assert_in_first_screen(rows.first)
    assert not page.locator("[data-testid=task-inbox] thead").is_visible()  # cards, not a five-column table
    shot(page, "mobile-tasks")
    row = page.locator(f"#task-{book['tasks'][1].pk}")
    text = row.inner_text()
    assert "电话介绍两融开通条件" in text and "手机客户1" in text and "商机：两融意向" in text
    row.locator("button[type=submit]").tap()  # no outcome: the browser refuses before anything is sent
    assert row.locator("select").evaluate("el => el.validity.valueMissing") is True
    row.locator("select[name=outcome]").select_option("reached")
    row.locator("button[type=submit]").tap()
    page.wait_for_selector(f"#task-{book['tasks'][1].pk} [data-testid=task-done]")
    assert Task.objects.get(pk=book["tasks"][1].pk).outcome == "reached"

    wecom = page.locator(f"#task-{book['wecom_task'].pk}")
    page.once("dialog", lambda dialog: dialog.accept())  # 跳过 asks first
    wecom.locator("[data-testid=wecom-skip]").tap()
    page.wait_for_selector(f"#task-{book['wecom_task'].pk} [data-testid=sop-message-skipped]")
    assert_no_sideways_scroll(page)
    shot(page, "mobile-tasks-done")


def test_customer_list_cards_filter_drawer_chips_and_bulk_bar(page, advisor, book):
    phone_login(page, advisor)
    page.goto("/customers/")
    assert_no_sideways_scroll(page)
    rows = page.locator("[data-testid=customer-row]")
    assert rows.count() == 9
    assert_in_first_screen(rows.first)
    assert not page.locator("[data-testid=customer-filters]").is_visible()  # the filters wait in the drawer
    assert not page.locator("[data-testid=bulk-bar]").is_visible()  # nothing ticked: no bar
    card = page.locator(f"[data-external-id={book['customers'][5].external_id}]")
    text = card.inner_text()
    assert "手机客户5" in text and "138****0005" in text and "重要价值" in text and "16 天前" in text
    assert card.locator(".c-tags .badge").count() == 3 and "+2" in card.locator(".c-tags").inner_text()
    assert "回访开户未入金客户" in page.locator(
        f"[data-external-id={book['customers'][0].external_id}] [data-testid=next-task]").inner_text()
    shot(page, "mobile-customers")

    opener = page.locator("[data-testid=filter-open]")
    assert_touchable(opener)
    opener.tap()
    drawer = page.locator("[data-testid=filter-drawer]")
    page.locator("#id_tier").wait_for(state="visible")
    page.wait_for_timeout(400)  # slides in
    assert drawer.bounding_box()["x"] >= 0 and drawer.bounding_box()["x"] + drawer.bounding_box()["width"] <= 391
    assert_touchable(page.locator("#id_tier"))
    shot(page, "mobile-filter-drawer")
    page.select_option("#id_tier", "important_value")
    page.wait_for_selector("[data-testid=customer-count] >> text=共 4 位客户")
    page.locator("[data-testid=filter-apply]").tap()
    page.locator("#id_tier").wait_for(state="hidden")
    assert "tier=important_value" in page.url
    chip = page.locator("[data-testid=filter-chip]")
    assert chip.count() == 1 and "价值分层：重要价值" in chip.inner_text()
    assert "1" in page.locator("[data-testid=filter-open]").inner_text()  # the button counts active filters
    assert_in_first_screen(rows.first)
    assert_no_sideways_scroll(page)
    shot(page, "mobile-customers-filtered")

    rows.nth(0).locator("input[name=customers]").tap()  # the whole 44 px box ticks
    rows.nth(1).locator(".row-check").tap()
    bar = page.locator("[data-testid=bulk-bar]")
    bar.wait_for(state="visible")
    assert "已选 2 位" in bar.inner_text()
    box = bar.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"] + 1  # stuck to the bottom of the screen, over nothing above
    assert_touchable(page.locator("[data-testid=bulk-add]"))
    assert_touchable(rows.nth(2).locator(".row-check"))
    shot(page, "mobile-bulk-bar")
    page.select_option("[data-testid=bulk-tag]", "idle_funds")
    page.locator("[data-testid=bulk-add]").tap()
    page.wait_for_selector("[data-testid=bulk-result]")
    from tagging.models import CustomerTag

    assert CustomerTag.objects.filter(tag__code="idle_funds").count() == 2

    page.locator("[data-testid=filter-chip]").tap()  # removing the chip lifts the filter in place
    page.wait_for_selector("[data-testid=customer-count] >> text=共 9 位客户")
    assert page.locator("[data-testid=filter-chip]").count() == 0 and page.input_value("#id_tier") == ""

    page.locator("[data-testid=filter-open]").tap()  # a full mobile typed in the drawer: found, and masked in its chip
    page.locator("#id_q").fill("13800130003")
    page.locator("[data-testid=filter-apply]").tap()
    page.wait_for_selector("[data-testid=customer-count] >> text=共 1 位客户")
    assert page.locator("[data-testid=filter-chip]").inner_text().startswith("搜索：138****0003")
    assert "13800130003" not in page.url
    assert_no_sideways_scroll(page)


def test_customer_360_and_a_follow_up_note(page, advisor, book):
    customer = book["customers"][3]
    phone_login(page, advisor)
    page.goto(f"/customers/c/{customer.external_id}/")
    assert_no_sideways_scroll(page)
    assert_in_first_screen(page.locator("[data-testid=customer-header]"))
    shot(page, "mobile-360")
    page.locator("[data-testid=sections] >> text=跟进").tap()
    textarea = page.locator("[data-testid=note-form] textarea")
    textarea.fill("客户想了解科创板开通条件，周五再联系")
    save = page.locator("[data-testid=note-form] button")
    assert_touchable(save)
    save.tap()
    page.wait_for_selector("[data-testid=notes] >> text=客户想了解科创板开通条件")
    assert Note.objects.get(customer=customer).body == "客户想了解科创板开通条件，周五再联系"
    assert_no_sideways_scroll(page)
    page.locator("#followup").screenshot(path=str(ARTIFACTS / "mobile-360-followup.png"))


@pytest.mark.parametrize("page", ["en"], indirect=True)
def test_the_pages_in_english_fit_the_phone(page, advisor, book):
    phone_login(page, advisor)
    assert page.locator("[data-testid=menu-toggle]").get_attribute("aria-label") == "Menu"
    pages = {"workbench": "/", "customers": "/customers/", "tasks": "/customers/tasks/",
             "360": f"/customers/c/{book['customers'][5].external_id}/"}
    for name, url in pages.items():
        page.goto(url)
        assert_no_sideways_scroll(page)
        shot(page, f"mobile-en-{name}")
    page.goto("/customers/?tier=important_value")
    page.locator("[data-testid=filter-open]").tap()
    page.locator("#id_tier").wait_for(state="visible")
    page.wait_for_timeout(400)
    assert_no_sideways_scroll(page)
    shot(page, "mobile-en-filter-drawer")
    page.goto("/")
    page.locator("[data-testid=menu-toggle]").tap()
    page.locator("[data-testid=logout]").wait_for(state="visible")
    page.wait_for_timeout(400)
    assert_no_sideways_scroll(page)
    shot(page, "mobile-en-menu")


# --- desktop -------------------------------------------------------------------------------------------------

@pytest.fixture
def desktop(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def desktop_login(page, user):
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-42")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=nav]")


def test_desktop_sidebar_spans_a_long_page_and_the_audit_log_fits(desktop, advisor, compliance):
    from core.services import audit_record

    for i in range(40):
        TaskFactory(customer=CustomerFactory(advisor=advisor, name=f"桌面客户{i:02d}"), assignee=advisor,
                    title=f"回访第 {i} 位客户", due_at=timezone.now() + timedelta(days=2, minutes=i))
    desktop_login(desktop, advisor)
    assert not desktop.locator("[data-testid=menu-toggle]").is_visible()  # desktop: the sidebar, no menu button
    desktop.goto("/customers/tasks/")
    assert desktop.locator("[data-testid=task-row]").count() == 40
    geometry = desktop.evaluate("""() => {
        const aside = document.querySelector('aside.navbar-vertical').getBoundingClientRect();
        return {top: aside.top + scrollY, bottom: aside.bottom + scrollY, width: aside.width,
                page: document.documentElement.scrollHeight, screen: innerHeight}; }""")
    assert geometry["page"] > 2 * geometry["screen"]  # a long page
    assert geometry["top"] == 0 and geometry["bottom"] >= geometry["page"] - 1 and geometry["width"] > 200
    desktop.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert desktop.evaluate("document.elementFromPoint(20, innerHeight - 5).closest('aside') !== null")
    assert desktop.locator("[data-nav=customers]").bounding_box()["y"] >= 0  # the menu stays in view
    desktop.evaluate("window.scrollTo(0, 0)")
    shot(desktop, "desktop-tasks-long")
    desktop.goto("/accounts/password_change/")  # a short page: the sidebar still fills the screen
    assert desktop.evaluate("document.querySelector('aside.navbar-vertical').getBoundingClientRect().bottom") >= 900
    desktop.goto("/customers/")
    assert desktop.locator("[data-testid=customer-filters]").is_visible()  # the filters stay above the list
    assert not desktop.locator("[data-testid=filter-open]").is_visible()
    assert desktop.locator("[data-testid=customer-table] thead").is_visible()  # a table, not cards
    assert desktop.locator("[data-testid=bulk-bar]").is_visible()

    desktop.context.clear_cookies()
    for _ in range(30):
        audit_record(actor=compliance, action="customer.pii_search", target_type="customer_search",
                     target_id="mobile", reason="客户来电核实身份，需要按完整手机号查找客户" * 2,
                     details={"field": "mobile", "matches": 1, "term_hash": "9f" * 32,
                              "rule": {"all": [{"field": "tier", "op": "in", "value": ["important_value"] * 6}]},
                              "receiver": "https://crm.broker.example/api/v2/hooks/scrm?token=" + "a1b2c3d4" * 24})
    desktop_login(desktop, compliance)
    desktop.goto("/compliance/")
    desktop.wait_for_selector("[data-testid=audit-row]")
    width, inner, table = desktop.evaluate("""[document.documentElement.scrollWidth, window.innerWidth,
        document.querySelector('[data-testid=audit-table]').getBoundingClientRect().right]""")
    desktop.screenshot(path=str(ARTIFACTS / "desktop-audit-log.png"))
    assert width <= inner == 1440 and table <= 1440
