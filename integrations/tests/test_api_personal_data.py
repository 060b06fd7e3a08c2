"""API bodies carry an age band, never the birth date, and the ID number masked to its last four: customers list and
detail, segment members, and the OpenAPI schema that documents them."""

import json
from datetime import date

import pytest

from customers.models import age_band
from customers.tests.factories import CustomerFactory, id_number_for

pytestmark = pytest.mark.django_db

BORN = date(1990, 3, 7)
ID_NUMBER = id_number_for(BORN)


@pytest.fixture
def customer(branches, advisor):
    return CustomerFactory(advisor=advisor, mobile="13912345678", id_number=ID_NUMBER, birth_date=BORN)


def _assert_no_birth_date(row: dict, customer) -> None:
    assert "birth_date" not in row
    assert row["age_band"] == age_band(BORN) and row["age_band"]
    assert row["id_number_masked"] == "*" * 14 + ID_NUMBER[-4:]
    text = json.dumps(row)
    assert "1990-03-07" not in text and "19900307" not in text and ID_NUMBER[:6] not in text


def test_customer_list_and_detail_carry_an_age_band_not_the_birth_date(api, customer):
    row = next(r for r in api.get("/api/v1/customers/").json()["results"] if r["external_id"] == customer.external_id)
    _assert_no_birth_date(row, customer)
    _assert_no_birth_date(api.get(f"/api/v1/customers/{customer.external_id}/").json(), customer)
    unknown = CustomerFactory(branch=customer.branch, birth_date=None)
    assert api.get(f"/api/v1/customers/{unknown.external_id}/").json()["age_band"] is None


def test_segment_members_carry_an_age_band_not_the_birth_date(api, customer):
    from segments.models import Segment
    from segments.services import segment_rebuild

    segment = Segment.objects.create(name="全部", rule={"op": "and", "rules": [
        {"type": "attribute", "field": "risk_level", "op": "in", "value": ["C3"]}]})
    segment_rebuild(segment_id=segment.pk)
    rows = api.get(f"/api/v1/segments/{segment.pk}/members/").json()["results"]
    _assert_no_birth_date(next(r for r in rows if r["external_id"] == customer.external_id), customer)


def test_the_schema_documents_age_band_and_no_birth_date(client):
    schema = json.loads(client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").content)
    output = schema["components"]["schemas"]["CustomerOutput"]
    assert "birth_date" not in output["properties"] and "age_band" in output["required"]
    band = output["properties"]["age_band"]
    refs = [band.get("$ref")] + [s.get("$ref") for s in band.get("oneOf", []) + band.get("allOf", [])]
    enum_name = next(r for r in refs if r).rsplit("/", 1)[1]
    assert schema["components"]["schemas"][enum_name]["enum"] == ["<20", "20-29", "30-39", "40-49", "50-59", "60-69",
                                                                 "70-79", "80+"]
    assert "年龄段" in json.dumps(band, ensure_ascii=False) or "年龄段" in json.dumps(
        schema["components"]["schemas"][enum_name], ensure_ascii=False)
