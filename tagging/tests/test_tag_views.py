import json

import pytest

from customers.tests.factories import CustomerFactory
from tagging.models import CustomerTag, CustomerTagHistory, Tag, TagRule

pytestmark = pytest.mark.django_db


def test_taxonomy_is_for_operators(client, operator, advisor):
    client.force_login(advisor)
    assert client.get("/tags/").status_code == 404
    client.force_login(operator)
    body = client.get("/tags/").content.decode()
    for name in ("商机", "两融意向", "客户之声", "沟通偏好", "上午方便联系"):
        assert name in body


def test_operator_creates_a_tag_and_bad_input_is_explained(client, operator):
    client.force_login(operator)
    category = Tag.objects.get(code="margin_intent").category
    bad = client.post("/tags/new/", {"code": "bad code!", "name": "", "category": category.pk})
    assert bad.status_code == 400 and not Tag.objects.filter(name="").exists()
    ok = client.post("/tags/new/", {"code": "reit_intent", "name": "REITs 意向", "category": category.pk,
                                   "active": "on"})
    assert ok.status_code == 302 and Tag.objects.filter(code="reit_intent", category=category).exists()


def test_rule_preview_counts_and_reports_the_bad_node(client, operator, advisor):
    CustomerFactory(advisor=advisor, risk_level="C5")
    CustomerFactory(advisor=advisor, risk_level="C1")
    client.force_login(operator)
    rule = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C5"]}]}
    ok = client.post("/tags/t/risk_aggressive/rule/preview/", {"rule": json.dumps(rule)})
    assert "当前满足规则：1 位客户" in ok.content.decode()
    broken = {"op": "and", "rules": [{"type": "attribute", "field": "risk", "op": "in", "value": ["C5"]}]}
    bad = client.post("/tags/t/risk_aggressive/rule/preview/", {"rule": json.dumps(broken)})
    assert bad.status_code == 400 and "$.rules[0].field" in bad.content.decode()
    not_json = client.post("/tags/t/risk_aggressive/rule/", {"rule": "{oops"})
    assert not_json.status_code == 400 and "不是有效的 JSON" in not_json.content.decode()
    assert not TagRule.objects.exists()
    saved = client.post("/tags/t/risk_aggressive/rule/", {"rule": json.dumps(rule), "enabled": "on"})
    assert saved.status_code == 200 and TagRule.objects.get().enabled


def test_manual_tag_add_and_remove_on_the_customer(client, advisor):
    customer = CustomerFactory(advisor=advisor)
    client.force_login(advisor)
    url = f"/tags/customer/{customer.external_id}/add/"
    assert client.post(url, {"tag": "nope"}).status_code == 400
    response = client.post(url, {"tag": "margin_intent", "evidence": "电话里提到想开两融"})
    assert "两融意向" in response.content.decode()
    row = CustomerTag.objects.get()
    assert (row.source, row.set_by, row.evidence) == ("manual", advisor, "电话里提到想开两融")
    client.post(f"/tags/customer/{customer.external_id}/remove/margin_intent/")
    assert not CustomerTag.objects.exists()
    assert list(CustomerTagHistory.objects.order_by("id").values_list("action", flat=True)) == ["added", "removed"]
    page = client.get(f"/customers/c/{customer.external_id}/").content.decode()
    assert 'data-testid="history"' in page and "两融意向" in page


def test_bulk_tag_only_touches_customers_in_scope(client, advisor, other_branch_advisor):
    mine = CustomerFactory(advisor=advisor)
    theirs = CustomerFactory(advisor=other_branch_advisor)
    client.force_login(advisor)
    response = client.post("/tags/bulk/", {"tag": "idle_funds", "action": "add",
                                           "customers": [mine.external_id, theirs.external_id]})
    assert "已为 1 位客户添加标签" in response.content.decode()
    assert list(CustomerTag.objects.values_list("customer", flat=True)) == [mine.pk]
    listing = client.get("/customers/", {"tag": "idle_funds"}).content.decode()
    assert "共 1 位客户" in listing and "闲置资金" in listing


@pytest.mark.django_db(transaction=True)
def test_save_and_apply_now_tags_through_the_worker(client, operator, advisor, celery_worker):
    import time

    target = CustomerFactory(advisor=advisor, risk_level="C5")
    CustomerFactory(advisor=advisor, risk_level="C2")
    client.force_login(operator)
    rule = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C5"]}]}
    response = client.post("/tags/t/risk_aggressive/rule/", {"rule": json.dumps(rule), "enabled": "on", "apply": "1"})
    assert "正在后台打标" in response.content.decode()
    deadline = time.monotonic() + 20
    while not CustomerTag.objects.filter(tag__code="risk_aggressive").exists():
        assert time.monotonic() < deadline, "the worker did not apply the rule"
        time.sleep(0.2)
    assert list(CustomerTag.objects.values_list("customer", "source")) == [(target.pk, "rule")]
