"""/api/v1/segments: preview counts in the client's scope, 400 with the path of a bad node, the segment list with
scoped member counts, members by cursor (masked), and 404 for another branch's segment."""

import pytest

from customers.tests.factories import CustomerFactory
from integrations.tests import api_support
from segments.models import Segment

pytestmark = pytest.mark.django_db
api, branches, make_api_client, error_of = (api_support.api, api_support.branches, api_support.make_api_client,
                                            api_support.error_of)

C45 = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}


@pytest.fixture
def people(branches):
    bj, sh = branches["BJ01"], branches["SH01"]
    return {
        "bj": [CustomerFactory(branch=bj, risk_level="C4", mobile="13900000001") for _ in range(3)],
        "bj_low": CustomerFactory(branch=bj, risk_level="C1"),
        "sh": [CustomerFactory(branch=sh, risk_level="C5") for _ in range(2)],
    }


def test_preview_counts_within_the_client_scope(make_api_client, people):
    _c, firm = make_api_client(name="firm")
    _c, sh = make_api_client(name="sh", branch_code="SH01")
    assert firm.post("/api/v1/segments/preview/", {"rule": C45}).json() == {"count": 5}
    assert sh.post("/api/v1/segments/preview/", {"rule": C45}).json() == {"count": 2}


def test_preview_bad_rule_is_400_with_the_path(api, people):
    bad = {"op": "and", "rules": [C45["rules"][0], {"op": "or", "rules": [{"type": "tier", "op": "in", "value": []}]}]}
    response = api.post("/api/v1/segments/preview/", {"rule": bad})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_rule"
    assert error["details"][0]["path"] == "$.rules[1].rules[0].value"
    for body in ({}, {"rule": C45, "x": 1}, [], {"rule": "nope"}, {"rule": {"type": "attribute", "field": "age",
                                                                             "op": "gte", "value": 10**9}}):
        response = api.post("/api/v1/segments/preview/", body)
        assert response.status_code == 400, body
        error_of(response)


def test_preview_needs_the_segments_scope(make_api_client):
    _c, api_ = make_api_client(scopes=["customers:read"])
    assert api_.post("/api/v1/segments/preview/", {"rule": C45}).status_code == 403
    assert api_.get("/api/v1/segments/").status_code == 403


def test_list_and_members_are_scoped(make_api_client, people, branches):
    from segments.services import segment_rebuild

    firm = Segment.objects.create(name="全公司高风险", rule=C45)
    bj_only = Segment.objects.create(name="北京", rule=C45, branch=branches["BJ01"])
    Segment.objects.create(name="旧", rule=C45, archived=True)
    segment_rebuild(segment_id=firm.pk)
    _c, sh = make_api_client(name="sh", branch_code="SH01")
    body = sh.get("/api/v1/segments/").json()
    assert [s["name"] for s in body["results"]] == ["全公司高风险"]
    row = body["results"][0]
    assert row["member_count"] == 2 and row["branch"] is None and row["rule"] == C45 and row["rebuilt_at"]
    assert sh.get(f"/api/v1/segments/{bj_only.pk}/members/").status_code == 404
    members = sh.get(f"/api/v1/segments/{firm.pk}/members/").json()
    assert {m["external_id"] for m in members["results"]} == {c.external_id for c in people["sh"]}

    _c, firm_client = make_api_client(name="firm")
    names = [s["name"] for s in firm_client.get("/api/v1/segments/").json()["results"]]
    assert names == ["全公司高风险", "北京"]
    page = firm_client.get(f"/api/v1/segments/{firm.pk}/members/", {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    seen = [m["external_id"] for m in page["results"]]
    while page["next"]:
        page = firm_client.get(page["next"].split("testserver")[1]).json()
        seen += [m["external_id"] for m in page["results"]]
    assert sorted(seen) == sorted(c.external_id for c in people["bj"] + people["sh"])
    first = firm_client.get(f"/api/v1/segments/{firm.pk}/members/").json()["results"]
    bj_row = next(m for m in first if m["external_id"] == people["bj"][0].external_id)
    assert bj_row["mobile_masked"] == "139****0001" and "mobile" not in bj_row
    assert firm_client.get("/api/v1/segments/999999/members/").status_code == 404
    assert firm_client.get(f"/api/v1/segments/{firm.pk}/members/", {"cursor": "bad"}).status_code == 400


def test_preview_refuses_a_nested_segment_of_another_branch(make_api_client, people, branches):
    bj_only = Segment.objects.create(name="北京", rule=C45, branch=branches["BJ01"])
    _c, sh = make_api_client(name="sh", branch_code="SH01")
    response = sh.post("/api/v1/segments/preview/", {"rule": {"op": "and", "rules": [
        {"type": "segment", "op": "in", "segment": bj_only.pk}]}})
    assert response.status_code == 400
    assert error_of(response)["details"][0]["path"] == "$.rules[0].segment"
