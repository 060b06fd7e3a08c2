import json

import pytest

from conftest import ARTIFACTS
from customers.tests.factories import CustomerFactory
from tagging.models import CustomerTag, TagRule

pytestmark = pytest.mark.browser


def test_operator_edits_a_rule_with_a_live_preview(page, login, operator, advisor):
    for level in ("C5", "C5", "C1"):
        CustomerFactory(advisor=advisor, risk_level=level)
    login(operator)
    page.click("[data-nav=tags]")
    page.click("[data-tag=risk_aggressive]")
    rule = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C5"]}]}
    page.fill("[data-testid=rule-json]", json.dumps(rule))
    page.click("[data-testid=rule-preview-btn]")
    page.wait_for_selector("[data-testid=rule-preview] >> text=当前满足规则：2 位客户")
    page.fill("[data-testid=rule-json]", '{"op": "and", "rules": [{"type": "nope"}]}')
    page.click("[data-testid=rule-preview-btn]")
    page.wait_for_selector("[data-testid=rule-error] >> text=$.rules[0].type")
    page.fill("[data-testid=rule-json]", json.dumps(rule))
    page.click("[data-testid=rule-save]")
    page.wait_for_selector("[data-testid=rule-preview] >> text=规则已保存")
    assert TagRule.objects.get(tag__code="risk_aggressive").rule == rule
    page.screenshot(path=str(ARTIFACTS / "tags-rule-editor.png"), full_page=True)


def test_advisor_bulk_tags_from_the_list_and_tags_on_the_360_page(page, login, advisor):
    customers = [CustomerFactory(advisor=advisor, name=f"标签客户{i}") for i in range(3)]
    login(advisor)
    page.goto("/customers/")
    page.check(f"[data-external-id={customers[0].external_id}] input[name=customers]")
    page.check(f"[data-external-id={customers[1].external_id}] input[name=customers]")
    page.select_option("[data-testid=bulk-tag]", "idle_funds")
    page.click("[data-testid=bulk-add]")
    page.wait_for_selector("[data-testid=bulk-result] >> text=已为 2 位客户添加标签")
    assert CustomerTag.objects.filter(tag__code="idle_funds").count() == 2
    page.goto(f"/customers/c/{customers[2].external_id}/")
    page.select_option("[data-testid=tag-add-form] select", "contact_evening")
    page.fill("[data-testid=tag-add-form] input[name=evidence]", "客户说白天上班，晚上方便")
    page.click("[data-testid=tag-add-form] button")
    page.wait_for_selector("[data-testid=tag-contact_evening]")
    page.click("[data-testid=remove-contact_evening]")
    page.wait_for_selector("[data-testid=no-tags]")
    assert not CustomerTag.objects.filter(customer=customers[2]).exists()
