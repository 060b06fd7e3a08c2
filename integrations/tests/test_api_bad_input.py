"""Inputs that used to answer 500: each is a 4xx (or a row error) that names what is wrong, and nothing is written."""

import threading

import pytest
import requests

from customers.models import Customer, Trade
from customers.tests.factories import CustomerFactory, ProductFactory
from integrations.tests.api_support import error_of


@pytest.mark.django_db
@pytest.mark.parametrize("offset", ["+16:00", "-16:30", "+23:59"])
def test_updated_since_with_an_offset_no_clock_uses_is_a_400(api, branches, offset, operator):
    from segments.services import segment_create

    segment = segment_create(actor=operator, name="全部", rule={"op": "and", "rules": [
        {"type": "attribute", "field": "total_assets", "op": "gte", "value": 0}]})
    for path in ("/api/v1/customers/", f"/api/v1/segments/{segment.pk}/members/"):
        response = api.get(path, {"updated_since": f"2026-01-01T00:00:00{offset}"})
        assert response.status_code == 400, path
        assert error_of(response)["details"][0]["field"] == "updated_since"
    assert api.get("/api/v1/customers/", {"updated_since": "2026-01-01T00:00:00+14:00"}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "nul\x00byte"])
def test_text_postgresql_cannot_store_is_a_400_naming_where_it_is(api, branches, text):
    response = api.post("/api/v1/customers/bulk_upsert/",
                        {"customers": [{"external_id": "C1", "name": "正常"}, {"external_id": "C2", "name": text}]})
    assert response.status_code == 400 and "$.customers[1].name" in error_of(response)["message"]
    assert not Customer.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["1e30", 1e30, "9" * 40, "NaN", "-Infinity"])
def test_an_amount_out_of_any_range_is_a_row_error(api, branches, amount):
    CustomerFactory(external_id="BJ-1", branch=branches["BJ01"])
    ProductFactory(code="510300")
    body = api.post("/api/v1/trades/bulk/", {"trades": [{
        "external_id": "T1", "customer": "BJ-1", "product": "510300", "side": "buy", "amount": amount,
        "traded_at": "2026-01-05T10:00:00+08:00"}]}).json()
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("amount", "invalid_decimal")]
    assert not Trade.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_adding_a_tag_while_another_client_deletes_it_never_answers_500(live_server, make_api_client, branches):
    CustomerFactory(external_id="BJ-1", branch=branches["BJ01"])
    _client, api = make_api_client(name="racer")
    headers = {"Authorization": f"Bearer {api.key}"}
    url = f"{live_server.url}/api/v1/customers/BJ-1/tags/"
    statuses: list[int] = []

    def add():
        with requests.Session() as session:
            for _ in range(60):
                statuses.append(session.post(url, json={"tag": "margin_intent", "evidence": "x"}, headers=headers,
                                             timeout=30).status_code)

    def delete():
        with requests.Session() as session:
            for _ in range(60):
                statuses.append(session.delete(f"{url}margin_intent/", headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=add), threading.Thread(target=delete), threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 180 and not [s for s in statuses if s >= 500]
