"""Authentication, scopes, branch scope on every object URL, rate limit, the error shape, and the
create_api_client command and admin page."""

import io
import json

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from integrations.models import ApiClient
from integrations.tests.api_support import Api, error_of

pytestmark = pytest.mark.django_db


def test_no_key_is_401_in_the_error_shape(client):
    response = client.get("/api/v1/customers/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer scrm_abcdefgh_" + "x" * 43, "Basic abc", "Bearer"])
def test_invalid_key_is_401(client, make_api_client, header):
    make_api_client()
    response = client.get("/api/v1/customers/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    error_of(response)


def test_wrong_secret_with_a_real_prefix_is_401(client, make_api_client):
    api_client, api = make_api_client()
    forged = api.key[: len("scrm_") + 9] + "A" * 43
    assert client.get("/api/v1/customers/", HTTP_AUTHORIZATION=f"Bearer {forged}").status_code == 401
    assert api.get("/api/v1/customers/").status_code == 200


def test_deactivated_client_is_401(make_api_client):
    from integrations.api_clients import api_client_deactivate

    api_client, api = make_api_client()
    assert api.get("/api/v1/tags/").status_code == 200
    api_client_deactivate(actor=None, client=api_client)
    assert api.get("/api/v1/tags/").status_code == 401


def test_only_hash_and_prefix_are_stored(make_api_client):
    api_client, api = make_api_client()
    api_client.refresh_from_db()
    assert api.key.split("_")[1] == api_client.key_prefix
    assert api.key not in (api_client.key_hash, api_client.key_prefix) and len(api_client.key_hash) == 64


def test_a_logged_in_staff_session_without_key_is_401(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/api/v1/customers/").status_code == 401
    assert client.post("/api/v1/trades/bulk/", "{}", content_type="application/json").status_code == 401


def test_missing_scope_is_403(make_api_client):
    _c, api = make_api_client(scopes=["customers:read"])
    assert api.get("/api/v1/customers/").status_code == 200
    response = api.post("/api/v1/customers/bulk_upsert/", {"customers": []})
    assert response.status_code == 403
    assert "customers:write" in error_of(response)["message"]
    for path in ("/api/v1/tags/", "/api/v1/tiers/", "/api/v1/products/"):
        assert api.get(path).status_code == 403, path


def test_rate_limit_answers_429_with_retry_after(make_api_client):
    _c, api = make_api_client(rate=3)
    assert [api.get("/api/v1/tags/").status_code for _ in range(3)] == [200, 200, 200]
    response = api.get("/api/v1/tags/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert error_of(response)["code"] == "throttled"
    _other, other_api = make_api_client(name="other", rate=3)  # counted per client
    assert other_api.get("/api/v1/tags/").status_code == 200


# --- every API route with an object in its path: another branch's customer is 404 ---------------

def _api_patterns(resolver=None, prefix="", namespace=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _api_patterns(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern) and f"{namespace}{entry.name}".startswith("api:"):
            yield f"{namespace}{entry.name}", prefix + str(entry.pattern), entry


def test_branch_scoped_client_gets_404_for_another_branch_on_every_api_object_url(make_api_client, branches):
    foreign = CustomerFactory(branch=branches["BJ01"], external_id="BJ-FOREIGN")
    from tagging.models import Tag
    from tagging.services import customer_tag_add

    customer_tag_add(customer=foreign, tag=Tag.objects.get(code="margin_intent"), source="manual", actor="t")
    _c, api = make_api_client(name="sh", branch_code="SH01")
    from integrations.models import WebhookSubscription

    other_client, _other = make_api_client(name="bj", branch_code="BJ01")
    subscription = WebhookSubscription.objects.create(name="bj", url="https://example.com/h", event_types=["tag.added"],
                                                      secret_encrypted="x", api_client=other_client)
    from segments.models import Segment

    bj_segment = Segment.objects.create(name="北京客群", branch=branches["BJ01"],
                                        rule={"op": "and", "rules": [{"type": "tier", "op": "in", "value": ["x"]}]})
    # customers of another branch, objects of another client (webhook subscriptions), another branch's segment
    values = {"external_id": foreign.external_id, "tag_code": "margin_intent", "subscription_id": str(subscription.pk),
              "segment_id": str(bj_segment.pk)}
    bodies = {"POST": {"tag": "margin_intent"}, "PATCH": {"name": "改名"}}
    checked = 0
    for name, route, entry in _api_patterns():
        converters = entry.pattern.converters
        if not converters:
            continue
        assert set(converters) <= set(values), f"{name}: teach this test to make a {set(converters)}"
        path = "/" + route
        for kwarg, value in values.items():
            for converter in ("str:", "int:", ""):
                path = path.replace(f"<{converter}{kwarg}>", value)
        view_class = entry.callback.view_class
        for method in ("GET", "POST", "PATCH", "DELETE"):
            if not hasattr(view_class, method.lower()):
                continue
            call = {"GET": api.get, "DELETE": api.delete}.get(method)
            response = call(path) if call else getattr(api, method.lower())(path, bodies[method])
            assert response.status_code == 404, f"{method} {path} answered {response.status_code}"
            error_of(response)
            checked += 1
    assert checked >= 6
    foreign.refresh_from_db()
    assert foreign.name != "改名" and foreign.tags.filter(tag__code="margin_intent").exists()


# --- the error shape for what Django or the parser rejects -----------------------------------------

def test_malformed_json_is_400(api):
    response = api.post("/api/v1/customers/bulk_upsert/", raw='{"customers": [')
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_wrong_type_is_400(api):
    for body in ({"customers": "x"}, [], {"nope": []}, {"customers": [], "extra": 1}):
        response = api.post("/api/v1/customers/bulk_upsert/", body)
        assert response.status_code == 400, body
        error_of(response)


def test_unknown_routes_under_api_are_404_in_the_shape(api):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    for path in ("/api/v1/nope/", "/api/v2/customers/", "/api/", "/api/v1/customers/x/tags/y/z/"):
        response = api.get(path)
        assert response.status_code == 404, path
        error_of(response)
    for method in (client.post, client.put, client.delete):  # no CSRF 403 for API callers
        response = method("/api/v1/nope/")
        assert response.status_code == 404
        error_of(response)


def test_wrong_method_is_405_in_the_shape(api):
    response = api.delete("/api/v1/customers/")
    assert response.status_code == 405
    error_of(response)
    assert api.get("/api/v1/trades/bulk/").status_code == 405


def test_unsupported_media_type_is_415(api):
    response = api.client.post("/api/v1/trades/bulk/", "trades=1", content_type="text/plain",
                               HTTP_AUTHORIZATION=f"Bearer {api.key}")
    assert response.status_code == 415
    error_of(response)


def test_payload_over_the_upload_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = api.post("/api/v1/events/bulk/", {"events": [{"event_id": "x" * 2000}]})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_nul_characters_are_400_not_500(api):
    response = api.post("/api/v1/products/bulk_upsert/", raw='{"products": [{"code": "A\\u0000"}]}')
    assert response.status_code == 400
    assert api.get("/api/v1/customers/", {"branch": "\x00"}).status_code == 400


def test_settings_keep_the_upload_limit_sensible(settings):
    assert 10 * 1024 * 1024 <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 50 * 1024 * 1024


# --- schema and docs --------------------------------------------------------------------------

def test_schema_is_openapi3_with_bearer_security(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "scrm_<prefix>_<secret>"}
    assert "/api/v1/customers/bulk_upsert/" in schema["paths"]
    assert "429" in schema["paths"]["/api/v1/customers/"]["get"]["responses"]


def test_docs_page_works_offline(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "/static/drf_spectacular_sidecar/" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    asset = html.split("/static/drf_spectacular_sidecar/")[1].split('"')[0]
    static = client.get("/static/drf_spectacular_sidecar/" + asset)
    assert static.status_code == 200


# --- creating clients ---------------------------------------------------------------------------

def test_create_api_client_command_prints_the_key_last(branches, client):
    out = io.StringIO()
    call_command("create_api_client", "erp", "--branch", "SH01", "--scopes", "customers:read", "tags:read", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("scrm_") and " " not in key
    created = ApiClient.objects.get(name="erp")
    assert created.branch.code == "SH01" and created.scopes == ["customers:read", "tags:read"]
    assert Api(client, key).get("/api/v1/customers/").status_code == 200
    assert Api(client, key).get("/api/v1/products/").status_code == 403


def test_create_api_client_command_rejects_unknown_scope(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_client", "bad", "--scopes", "root", stdout=io.StringIO())


def test_admin_page_creates_shows_key_once_and_deactivates(client, admin_user, branches):
    client.force_login(admin_user)
    assert client.get("/integrations/").status_code == 200
    assert b"/integrations/api-clients/" in client.get("/integrations/").content
    response = client.post("/integrations/api-clients/", {"name": "crm", "branch": "BJ01",
                                                          "scopes": ["customers:read"], "rate_limit_per_minute": 60})
    assert response.status_code == 200
    html = response.content.decode()
    key = html.split('data-testid="api-key-value">')[1].split("<")[0]
    assert key.startswith("scrm_")
    assert key not in client.get("/integrations/api-clients/").content.decode()  # shown once
    api = Api(client.__class__(), key)
    assert api.get("/api/v1/customers/").status_code == 200
    created = ApiClient.objects.get(name="crm")
    assert AuditLog.objects.filter(action="api_client.create", target_id=str(created.pk)).exists()
    client.post(f"/integrations/api-clients/{created.pk}/deactivate/")
    assert api.get("/api/v1/customers/").status_code == 401
    assert AuditLog.objects.filter(action="api_client.deactivate", target_id=str(created.pk)).exists()


def test_api_client_pages_are_admin_only(client, operator, make_api_client):
    api_client, _api = make_api_client()
    client.force_login(operator)
    assert client.get("/integrations/api-clients/").status_code == 404
    assert client.post(f"/integrations/api-clients/{api_client.pk}/deactivate/").status_code == 404
    api_client.refresh_from_db()
    assert api_client.active


# --- firm-wide reference data is written by firm-wide keys only ----------------------------------------------

def test_a_branch_key_cannot_hold_or_use_products_write(make_api_client, branches):
    from django.core.management import CommandError, call_command

    from core.errors import ApplicationError
    from customers.models import Product
    from integrations.api_clients import api_client_create
    from integrations.models import ApiClient

    with pytest.raises(ApplicationError) as exc:
        api_client_create(actor=None, name="bj-products", scopes=["products:write"], branch_code="BJ01")
    assert exc.value.code == "api_client_scope_firm_wide"
    with pytest.raises(CommandError, match="products:write"):
        call_command("create_api_client", "bj-cli", "--branch", "BJ01", "--scopes", "products:write")
    call_command("create_api_client", "bj-default", "--branch", "BJ01")  # the defaults leave it out for a branch key
    assert "products:write" not in ApiClient.objects.get(name="bj-default").scopes

    Product.objects.create(code="F1", name="基金甲", type="fund", risk_level="R5")
    client, api = make_api_client(name="bj", branch_code="BJ01")
    ApiClient.objects.filter(pk=client.pk).update(scopes=[*client.scopes, "products:write"])  # stored before the rule
    response = api.post("/api/v1/products/bulk_upsert/",
                        {"products": [{"code": "F1", "name": "基金甲", "type": "fund", "risk_level": "R1"}]})
    assert response.status_code == 403 and "products:write" in response.json()["error"]["message"]
    assert Product.objects.get(code="F1").risk_level == "R5"
