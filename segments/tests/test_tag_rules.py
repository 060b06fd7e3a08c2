"""Rule tags are edited in the same visual builder as segments: the tag page links to it, the builder shows the
tag's rule, edits count live, and saving stores the rule through tagging's service (validated, audited)."""

import json

import pytest
from django.urls import reverse

from conftest import ARTIFACTS
from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from tagging.models import Tag, TagCategory, TagRule

RISKY = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}


@pytest.fixture
def tag(db):
    category, _ = TagCategory.objects.get_or_create(code="opportunity", defaults={"name": "商机", "kind": "opportunity"})
    return Tag.objects.get_or_create(code="risk_lover", defaults={"name": "风险偏好", "category": category})[0]


@pytest.mark.django_db
def test_the_builder_shows_saves_and_refuses_a_tag_rule(client, operator, advisor, tag):
    url = reverse("segments:tag_rule_edit", args=[tag.code])
    client.force_login(advisor)
    assert client.get(url).status_code == 404  # advisors do not edit rules
    client.force_login(operator)
    TagRule.objects.create(tag=tag, rule=RISKY, enabled=False)
    page = client.get(url).content.decode()
    assert "data-testid=\"builder\"" in page and "C5" in page and "风险偏好" in page

    wider = {"op": "or", "rules": [*RISKY["rules"], {"type": "attribute", "field": "risk_level", "op": "in",
                                                      "value": ["C3"]}]}
    response = client.post(url, {"rule": json.dumps(wider), "enabled": "on", "remove_when_unmatched": "on"})
    assert response.status_code == 302 and response["Location"] == reverse("tagging:tag", args=[tag.code])
    saved = TagRule.objects.get(tag=tag)
    assert (saved.rule, saved.enabled, saved.remove_when_unmatched) == (wider, True, True)
    assert AuditLog.objects.filter(action="tag_rule.save", target_id=tag.code, actor=operator).exists()

    for bad, message in ((json.dumps({"op": "and", "rules": []}), "至少添加一个条件"),
                         (json.dumps({"op": "and", "rules": [{"type": "trades", "measure": "count", "op": "gte",
                                                              "value": 1, "within_days": 0}]}), "规则有误，未保存")):
        response = client.post(url, {"rule": bad, "enabled": "on"})
        assert response.status_code == 400 and message in response.content.decode()
    assert TagRule.objects.get(tag=tag).rule == wider  # nothing lost


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_operator_builds_a_tag_rule_from_the_tag_page(page, login, operator, advisor, tag):
    for level in ("C4", "C5", "C1", "C2"):
        CustomerFactory(advisor=advisor, risk_level=level)
    login(operator)
    page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/")[2] + reverse("tagging:tag", args=[tag.code]))
    page.click("[data-testid=rule-builder-link]")
    page.wait_for_selector("[data-testid=builder]")
    page.locator("[data-path='$']").first.locator("[data-testid=add-condition]").first.click()
    condition = page.locator("[data-path='$.rules[0]']")
    condition.wait_for()
    page.wait_for_selector("[data-testid=preview-count]")
    condition.locator("input[value=C4]").check()
    condition.locator("input[value=C5]").check()
    page.wait_for_selector("[data-testid=preview-count][data-count='3']")  # C1 (the default), C4 and C5
    condition.locator("input[value=C1]").uncheck()
    page.wait_for_selector("[data-testid=preview-count][data-count='2']")
    page.check("[data-testid=tag-rule-enabled]")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tag-rule-builder.png"), full_page=True)
    page.click("[data-testid=tag-rule-save]")
    page.wait_for_selector("[data-testid=rule-editor]")
    saved = TagRule.objects.get(tag=tag)
    assert saved.enabled and saved.rule["rules"][0]["field"] == "risk_level"
    assert sorted(saved.rule["rules"][0]["value"]) == ["C4", "C5"]
