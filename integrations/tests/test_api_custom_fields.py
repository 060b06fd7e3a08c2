"""Custom fields over the REST API: the ``custom_fields`` object on customer bodies (output: active fields with a
value), accepted on bulk upsert and PATCH with the same validation as every other way in, the definitions list,
and the OpenAPI schema."""

import json

import pytest

from customers import services
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from integrations.tests.api_support import error_of

pytestmark = pytest.mark.django_db

BULK = "/api/v1/customers/bulk_upsert/"


@pytest.fixture
def fields(admin_user):
    make = services.custom_field_definition_create
    return {
        "pref": make(actor=admin_user, code="pref", label="投资偏好", field_type="choice", options=["稳健", "进取"],
                     required=True, order=1),
        "score": make(actor=admin_user, code="score", label="评分", field_type="number", min_value=0, max_value=100,
                      order=2),
        "review": make(actor=admin_user, code="review", label="回访日期", field_type="date", order=3),
        "hobbies": make(actor=admin_user, code="hobbies", label="兴趣", field_type="multi_choice",
                        options=["基金", "股票"], order=4),
        "old": make(actor=admin_user, code="old", label="旧字段", field_type="text", order=5),
    }


def test_bulk_upsert_validates_custom_fields_per_definition(api, branches, fields, admin_user):
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["old"], active=False)
    rows = [
        {"external_id": "A1", "name": "甲", "branch": "BJ01",
         "custom_fields": {"pref": "稳健", "score": 42, "review": "2027-06-01", "hobbies": ["股票", "基金"]}},
        {"external_id": "A2", "name": "乙", "branch": "BJ01",
         "custom_fields": {"pref": "保守", "score": 101, "review": "明天", "hobbies": "基金", "old": "x", "nope": 1}},
        {"external_id": "A3", "name": "丙", "branch": "BJ01", "custom_fields": {"score": 1}},
        {"external_id": "A4", "name": "丁", "branch": "BJ01", "custom_fields": ["pref"]},
    ]
    response = api.post(BULK, {"customers": rows})
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 0, 0)
    assert {(e["external_id"], e["field"], e["code"]) for e in body["errors"]} == {
        ("A2", "custom_fields.pref", "invalid_choice"), ("A2", "custom_fields.score", "out_of_range"),
        ("A2", "custom_fields.review", "invalid_date"), ("A2", "custom_fields.old", "inactive_field"),
        ("A2", "custom_fields.nope", "unknown_field"), ("A3", "custom_fields.pref", "required"),
        ("A4", "custom_fields", "invalid_type")}
    assert Customer.objects.get(external_id="A1").custom_fields == {
        "pref": "稳健", "score": 42, "review": "2027-06-01", "hobbies": ["基金", "股票"]}
    assert not Customer.objects.filter(external_id__in=["A2", "A3", "A4"]).exists()


def test_patch_merges_validates_and_answers_the_body(api, branches, fields, admin_user):
    customer = CustomerFactory(external_id="P1", branch=branches["BJ01"],
                               custom_fields={"pref": "稳健", "score": 10, "old": "保留"})
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["old"], active=False)
    response = api.patch("/api/v1/customers/P1/", {"custom_fields": {"score": "12.5", "hobbies": ["基金"],
                                                                     "review": None}})
    assert response.status_code == 200, response.content
    assert response.json()["custom_fields"] == {"pref": "稳健", "score": 12.5, "hobbies": ["基金"]}  # "old" hidden
    customer.refresh_from_db()
    assert customer.custom_fields == {"pref": "稳健", "score": 12.5, "hobbies": ["基金"], "old": "保留"}
    bad = api.patch("/api/v1/customers/P1/", {"custom_fields": {"score": -3, "hobbies": ["黄金"]}})
    assert bad.status_code == 400
    error = error_of(bad)
    assert {(d["field"], d["code"]) for d in error["details"]} == {("custom_fields.score", "out_of_range"),
                                                                   ("custom_fields.hobbies", "invalid_choice")}
    customer.refresh_from_db()
    assert customer.custom_fields["score"] == 12.5


def test_list_and_segment_members_carry_custom_fields(api, branches, fields):
    CustomerFactory(external_id="L1", branch=branches["BJ01"], custom_fields={"pref": "进取", "score": 7})
    CustomerFactory(external_id="L2", branch=branches["BJ01"])
    results = {c["external_id"]: c for c in api.get("/api/v1/customers/").json()["results"]}
    assert results["L1"]["custom_fields"] == {"pref": "进取", "score": 7} and results["L2"]["custom_fields"] == {}


def test_definitions_list_and_schema(api, client, fields):
    listed = api.get("/api/v1/custom-fields/").json()["results"]
    assert [d["code"] for d in listed] == ["pref", "score", "review", "hobbies", "old"]
    assert listed[0] == {"code": "pref", "label": "投资偏好", "type": "choice", "options": ["稳健", "进取"],
                         "required": True, "min_value": None, "max_value": None, "max_length": None}
    assert listed[1]["max_value"] == "100.000000"
    schema = json.loads(client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").content)
    components = schema["components"]["schemas"]
    assert "custom_fields" in components["CustomerOutput"]["properties"]
    assert "custom_fields" in components["CustomerRowRequest"]["properties"]
    assert components["CustomerOutput"]["properties"]["custom_fields"]["type"] == "object"
    assert "/api/v1/custom-fields/" in schema["paths"]
    assert "GET custom-fields/" in components["CustomerRowRequest"]["properties"]["custom_fields"]["description"]
