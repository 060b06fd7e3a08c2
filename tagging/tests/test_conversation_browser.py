"""An advisor's note becomes a tag suggestion on the 360° page, with its evidence, and one click sets it."""

import importlib

import pytest

from conftest import ARTIFACTS
from customers.tests.factories import CustomerFactory
from tagging.models import ConversationRule, CustomerTag, CustomerTagHistory, TagSuggestion

pytestmark = pytest.mark.browser


@pytest.fixture
def default_rules(transactional_db):
    """Transactional tests flush the tables, data migrations included; put the default rules back."""
    if not ConversationRule.objects.exists():
        from django.apps import apps

        importlib.import_module("tagging.migrations.0003_default_conversation_rules").load(apps, None)


def test_note_becomes_a_suggestion_the_advisor_confirms(page, login, advisor, default_rules):
    customer = CustomerFactory(advisor=advisor, name="两融意向客户")
    login(advisor)
    page.goto(f"/customers/c/{customer.external_id}/")
    page.fill("[data-testid=note-form] textarea", "客户说想了解一下两融怎么开通，不想买基金")
    page.click("[data-testid=note-form] button")
    page.wait_for_selector("[data-testid=notes] >> text=客户说想了解一下两融怎么开通")

    page.reload()
    suggestion = page.locator("[data-testid=suggestion-margin_intent]")
    suggestion.wait_for()
    assert "两融意向" in suggestion.inner_text()
    assert suggestion.locator("[data-testid=snippet]").inner_text() == "“客户说想了解一下两融怎么开通”"
    assert suggestion.locator("mark").inner_text() == "两融"
    assert "跟进记录" in suggestion.inner_text()
    assert page.locator("[data-testid=suggestion-fund_interest]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "conversation-suggestion.png"), full_page=True)

    page.click("[data-testid=confirm-margin_intent]")
    page.wait_for_selector("[data-testid=suggestion-flash] >> text=已添加标签「两融意向」")
    assert page.locator("[data-testid=suggestion-margin_intent]").count() == 0
    row = CustomerTag.objects.get(customer=customer, tag__code="margin_intent")
    assert (row.source, row.evidence, row.set_by) == ("conversation", "客户说想了解一下两融怎么开通", advisor)
    assert CustomerTagHistory.objects.filter(customer=customer, tag__code="margin_intent", action="added").exists()
    assert TagSuggestion.objects.get(customer=customer, tag__code="margin_intent").status == "confirmed"

    page.reload()
    page.wait_for_selector("[data-testid=tag-margin_intent]")
    assert "会话识别" in page.inner_text("[data-testid=tag-margin_intent]")
    assert page.locator("[data-testid=suggestion-margin_intent]").count() == 0


def test_operator_tries_the_rules_and_adds_one(page, login, operator, default_rules):
    login(operator)
    page.goto("/tags/conversation-rules/")
    page.fill("[data-testid=try-text]", "客户在工行买的理财下个月到期，下午方便，不想开两融")
    page.click("[data-testid=try-button]")
    page.wait_for_selector("[data-testid=try-match-product_expiring]")
    assert "下个月" in page.inner_text("[data-testid=try-match-product_expiring]")
    assert page.locator("[data-testid=try-match-contact_afternoon]").count() == 1
    assert page.locator("[data-testid=try-match-margin_intent]").count() == 0
    assert "否定" in page.inner_text("[data-testid=try-skipped-margin_intent]")

    page.select_option("#id_tag", "star_intent")
    page.fill("[data-testid=rule-keywords]", "北交所、北证")
    page.fill("[data-testid=rule-required_any]", "想，开通")
    page.click("[data-testid=conversation-rule-form] button[type=submit]")
    page.wait_for_selector("[data-testid=rule-created] >> text=已为「科创板意向」新增规则")
    assert ConversationRule.objects.filter(tag__code="star_intent", keywords=["北交所", "北证"]).exists()
    page.fill("[data-testid=try-text]", "客户想开通北交所")
    page.click("[data-testid=try-button]")
    page.wait_for_selector("[data-testid=try-match-star_intent]")
    page.screenshot(path=str(ARTIFACTS / "conversation-rules.png"), full_page=True)
