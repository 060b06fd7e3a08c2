"""Trades, behaviour events and products over the API: set-based, idempotent, scoped, audited."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditLog
from customers.models import BehaviourEvent, Product, Trade
from customers.tests.factories import CustomerFactory, ProductFactory
from integrations.tests.api_support import error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(branches):
    return {"bj": CustomerFactory(external_id="BJ-1", branch=branches["BJ01"]),
            "sh": CustomerFactory(external_id="SH-1", branch=branches["SH01"]),
            "product": ProductFactory(code="510300")}


def _trade(i, customer="BJ-1", **extra):
    return {"external_id": f"T{i}", "customer": customer, "product": "510300", "side": "buy", "amount": "1000.00",
            "traded_at": (timezone.now() - timedelta(hours=i + 1)).isoformat(), **extra}


def test_trades_bulk_is_idempotent_and_counts_exactly(api, world, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("tagging.tasks.tag_rules_apply_all_task.delay", lambda **kw: queued.append(("rules", kw)))
    monkeypatch.setattr("tagging.tasks.tier_incremental.delay", lambda **kw: queued.append(("tier", kw)))
    rows = [_trade(i) for i in range(3)] + [_trade(3, amount=12.5)]
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/trades/bulk/", {"trades": rows})
    assert first.status_code == 200
    assert first.json() == {"created": 4, "updated": 0, "unchanged": 0, "errors": []}
    assert sorted(queued) == [("rules", {"customer_ids": [world["bj"].pk]}), ("tier", {"customer_ids": [world["bj"].pk]})]
    assert api.post("/api/v1/trades/bulk/", {"trades": rows}).json() == {
        "created": 0, "updated": 0, "unchanged": 4, "errors": []}
    rows[0]["amount"] = 2000
    assert api.post("/api/v1/trades/bulk/", {"trades": rows}).json()["updated"] == 1
    assert Trade.objects.get(external_id="T0").amount == 2000 and Trade.objects.count() == 4
    assert AuditLog.objects.filter(action="trade.bulk_ingest", actor_label="api:crm").count() == 3


def test_trade_row_errors(api, world):
    rows = [
        _trade(0, traded_at="2025-03-01T09:30:00"),            # naive
        _trade(1, customer="NOPE"),                             # unknown customer
        _trade(2, product="NOPE"),                              # unknown product
        _trade(3, amount="-5"),
        _trade(4, side="hold"),
        {**_trade(5), "price": 3},                              # unknown field
        _trade(6, amount=True),                                 # wrong type
        _trade(7), _trade(7),                                   # duplicate in the batch
        _trade(8, traded_at="not a time"),
    ]
    body = api.post("/api/v1/trades/bulk/", {"trades": rows}).json()
    assert body["created"] == 1
    codes = {(e["index"], e["field"], e["code"]) for e in body["errors"]}
    assert codes == {(0, "traded_at", "naive_datetime"), (1, "customer", "unknown_customer"),
                     (2, "product", "unknown_product"), (3, "amount", "not_positive"), (4, "side", "invalid_choice"),
                     (5, "price", "unknown_field"), (6, "amount", "invalid_type"), (8, "external_id", "duplicate"),
                     (9, "traded_at", "invalid_datetime")}
    assert list(Trade.objects.values_list("external_id", flat=True)) == ["T7"]


def test_trades_for_another_branch_are_row_errors(make_api_client, world):
    Trade.objects.create(external_id="BJ-TRADE", customer=world["bj"], product=world["product"], side="buy",
                         amount=1, traded_at=timezone.now())
    _c, api = make_api_client(name="sh", branch_code="SH01")
    rows = [_trade(0, customer="SH-1"), _trade(1, customer="BJ-1"), {**_trade(2, customer="SH-1"), "external_id": "BJ-TRADE"}]
    body = api.post("/api/v1/trades/bulk/", {"trades": rows}).json()
    assert body["created"] == 1
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "unknown_customer"), (2, "out_of_scope")]
    assert Trade.objects.get(external_id="BJ-TRADE").customer == world["bj"]


def test_trades_over_10000_rows_is_413(api, world):
    response = api.post("/api/v1/trades/bulk/", {"trades": [_trade(0)] * 10_001})
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_many_rows"
    assert not Trade.objects.exists()


def test_events_bulk(api, world, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("tagging.tasks.tag_rules_apply_all_task.delay", lambda **kw: queued.append(kw))
    monkeypatch.setattr("tagging.tasks.tier_incremental.delay", lambda **kw: pytest.fail("no tiers for events"))
    at = timezone.now().isoformat()
    rows = [{"event_id": "E1", "customer": "BJ-1", "type": "app_login", "occurred_at": at},
            {"event_id": "E2", "customer": "BJ-1", "type": "product_view", "occurred_at": at,
             "properties": {"product": "510300", "秒": 3}}]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post("/api/v1/events/bulk/", {"events": rows}).json() == {
            "created": 2, "updated": 0, "unchanged": 0, "errors": []}
    assert queued == [{"customer_ids": [world["bj"].pk]}]
    assert api.post("/api/v1/events/bulk/", {"events": rows}).json()["unchanged"] == 2
    rows[1]["properties"]["秒"] = 4
    assert api.post("/api/v1/events/bulk/", {"events": rows}).json()["updated"] == 1
    assert BehaviourEvent.objects.get(event_id="E2").properties == {"product": "510300", "秒": 4}
    bad = [{"event_id": "E3", "customer": "BJ-1", "type": "x", "occurred_at": "2025-01-01 10:00"},
           {"event_id": "E4", "customer": "BJ-1", "type": "x", "occurred_at": at, "properties": [1]},
           {"event_id": "E5", "customer": "GONE", "type": "x", "occurred_at": at},
           {"event_id": "E6", "customer": "BJ-1", "type": "x", "occurred_at": at, "extra": 1}]
    body = api.post("/api/v1/events/bulk/", {"events": bad}).json()
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (0, "naive_datetime"), (1, "invalid_type"), (2, "unknown_customer"), (3, "unknown_field")]
    assert AuditLog.objects.filter(action="event.bulk_ingest", actor_label="api:crm").count() == 4


def test_events_scoped_to_the_clients_branch(make_api_client, world):
    _c, api = make_api_client(name="sh", branch_code="SH01")
    at = timezone.now().isoformat()
    body = api.post("/api/v1/events/bulk/", {"events": [
        {"event_id": "E1", "customer": "SH-1", "type": "app_login", "occurred_at": at},
        {"event_id": "E2", "customer": "BJ-1", "type": "app_login", "occurred_at": at}]}).json()
    assert body["created"] == 1 and [e["index"] for e in body["errors"]] == [1]


def test_events_over_10000_rows_is_413(api, world):
    assert api.post("/api/v1/events/bulk/", {"events": [{}] * 10_001}).status_code == 413


def test_products(api, db):
    rows = [{"code": "600519", "name": "贵州茅台", "type": "stock", "risk_level": "R4"},
            {"code": "BAD", "name": "x", "type": "fund", "risk_level": "R9"}]
    body = api.post("/api/v1/products/bulk_upsert/", {"products": rows}).json()
    assert body["created"] == 1 and [(e["index"], e["field"]) for e in body["errors"]] == [(1, "risk_level")]
    assert api.post("/api/v1/products/bulk_upsert/", {"products": rows[:1]}).json()["unchanged"] == 1
    listed = api.get("/api/v1/products/").json()["results"]
    assert listed == [{"code": "600519", "name": "贵州茅台", "type": "stock", "risk_level": "R4"}]
    assert Product.objects.get(code="600519").risk_level == "R4"
    assert AuditLog.objects.filter(action="product.bulk_upsert", actor_label="api:crm").count() == 2
