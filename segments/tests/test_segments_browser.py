"""An operator builds a segment in Chromium: conditions and a nested group are added, negated and removed with htmx
(no page reload) while the live count follows; then saves, freezes a snapshot, exports and tags the members."""

import pytest

from conftest import ARTIFACTS
from customers.tests.factories import CustomerFactory
from segments.models import Segment, SegmentSnapshot
from tagging.models import CustomerTag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _count(page, expected: int):
    page.wait_for_selector(f"[data-testid=preview-count][data-count='{expected}']")


def _click(page, path: str, testid: str):
    page.locator(f"[data-path='{path}']").first.locator(f"[data-testid={testid}]").first.click()


def test_operator_builds_saves_snapshots_exports_and_tags(page, login, operator, advisor, celery_worker):
    from tagging.models import Tag, TagCategory

    for level in ("C4", "C4", "C5", "C1", "C1", "C1", "C2"):
        CustomerFactory(advisor=advisor, risk_level=level)
    if not Tag.objects.filter(code="margin_intent").exists():
        category, _ = TagCategory.objects.get_or_create(code="opportunity", defaults={"name": "商机", "kind": "opportunity"})
        Tag.objects.create(code="margin_intent", name="两融意向", category=category)

    login(operator)
    page.click("[data-nav=segments]")
    page.click("[data-testid=segment-new]")
    page.evaluate("window.sameDocument = true")
    _count(page, 3)  # the starting rule: risk level C4 or C5

    _click(page, "$", "add-condition")  # AND risk level C1 → nobody
    page.wait_for_selector("[data-path='$.rules[1]']")
    _count(page, 0)
    _click(page, "$", "toggle-op")  # OR → C4/C5 or C1
    _count(page, 6)
    _click(page, "$", "add-group")  # a nested AND group, empty: it changes nothing until it has a condition
    page.wait_for_selector("[data-path='$.rules[2]'] [data-testid=group-empty]")
    _count(page, 6)
    _click(page, "$.rules[2]", "add-condition")  # (C1) inside it: OR unchanged
    page.wait_for_selector("[data-path='$.rules[2].rules[0]']")
    _count(page, 6)
    _click(page, "$.rules[2]", "toggle-not")  # NOT (C1) joins everyone else
    page.wait_for_selector("[data-path='$.rules[2]'] [data-testid=node-not]")
    _count(page, 7)
    _click(page, "$.rules[2]", "remove-node")
    page.wait_for_selector("[data-path='$.rules[2]']", state="detached")
    _count(page, 6)
    # an editor change (debounced) re-counts too: untick C1 in the second condition → C4/C5 only... plus C2
    second = page.locator("[data-path='$.rules[1]']")
    second.locator("input[value=C2]").check()
    second.locator("input[value=C1]").uncheck()
    _count(page, 4)
    _click(page, "$.rules[1]", "remove-node")
    _count(page, 3)
    assert page.evaluate("window.sameDocument") is True  # every edit was htmx, no reload
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "segments-builder.png"), full_page=True)

    page.fill("[data-testid=segment-name]", "高风险偏好客户")
    page.click("[data-testid=segment-save]")
    page.wait_for_selector("[data-testid=segment-title] >> text=高风险偏好客户")
    segment = Segment.objects.get()
    assert segment.rule == {"op": "or", "rules": [{"type": "attribute", "field": "risk_level", "op": "in",
                                                   "value": ["C4", "C5"]}]}
    # the first rebuild runs in the worker; wait for it, then the members are listed
    for _ in range(30):
        if segment.rebuilds.filter(status="done").exists():
            break
        page.wait_for_timeout(500)
    page.reload()
    assert page.locator("[data-testid=member-row]").count() == 3

    page.fill("[data-testid=snapshot-name]", "双十一受众")
    page.click("[data-testid=snapshot-create]")
    page.wait_for_selector("[data-testid=snapshot-row] >> text=双十一受众")
    assert SegmentSnapshot.objects.get().size == 3

    page.select_option("#id_format", "csv")
    page.evaluate("window.sameDocument = true")
    page.click("[data-testid=export-start]")
    page.wait_for_selector("[data-testid=export-row][data-status=done]", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True  # polled by htmx
    with page.expect_download() as download:
        page.click("[data-testid=export-download]")
    content = open(download.value.path(), encoding="utf-8-sig").read()
    assert content.count("\n") >= 4 and "客户号" in content

    page.select_option("[data-testid=action-kind]", "tag_add")
    page.select_option("[data-testid=action-tag]", "margin_intent")
    page.click("[data-testid=action-start]")
    page.wait_for_selector("[data-testid=action-row][data-status=done]", timeout=30_000)
    assert page.locator("[data-testid=action-affected]").first.inner_text() == "3"
    assert CustomerTag.objects.filter(tag__code="margin_intent").count() == 3
    page.screenshot(path=str(ARTIFACTS / "segments-detail.png"), full_page=True)

    # 立即重算: the page says it is recomputing and shows the new count by itself once the worker is done
    from customers.models import Customer

    Customer.objects.filter(risk_level="C2").update(risk_level="C5")
    page.click("[data-testid=segment-rebuild]")
    page.wait_for_selector("[data-testid=rebuild-status] >> text=正在重算")
    page.wait_for_selector("[data-testid=rebuild-status]", state="detached", timeout=30_000)
    page.wait_for_selector("text=重算完成")
    assert page.locator("[data-testid=member-row]").count() == 4
