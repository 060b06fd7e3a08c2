"""Webhook URLs are user input: the outbound guard (core/outbound.py) refuses local and internal
addresses when a subscription is registered (REST API, admin page) and again when a delivery is
sent, for rows already stored; a local receiver proves nothing reaches it unless OUTBOUND_ALLOWLIST
names it. Admins see the status and the length of an answer, never its body."""

import pytest
from django.db import connection, transaction

from core import outbound
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.tests.api_support import error_of
from integrations.tests.http_receiver import receiver_start
from integrations.webhooks import WebhookEventType, webhook_delivery_attempt, webhook_event_emit

Status = WebhookDelivery.Status
EVENTS = [WebhookEventType.TASK_COMPLETED]


@pytest.fixture
def receiver():
    """A local receiver that is NOT allow-listed (tests that allow it say so)."""
    receiver, server = receiver_start()
    receiver.port = server.server_address[1]
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def queued(monkeypatch):
    from integrations import tasks

    calls = []
    monkeypatch.setattr(tasks.webhook_deliver, "delay", lambda *args: calls.append(args))
    monkeypatch.setattr(tasks.webhook_dispatch_due, "delay", lambda: None)
    return calls


def emit_one():
    with transaction.atomic():
        return webhook_event_emit(event_type=WebhookEventType.TASK_COMPLETED, payload={"task": {"id": 1}})


# --- registration over the REST API ------------------------------------------------------------

def test_a_branch_scoped_key_cannot_register_local_or_metadata_urls(make_api_client, receiver, queued):
    _client, api = make_api_client(name="bj-erp", scopes=["webhooks:manage"], branch_code="BJ01")
    cases = {
        receiver.url: "回调地址指向内网或本机（127.0.0.1），不允许",
        f"http://localhost:{receiver.port}/hook": "回调地址指向内网或本机（127.0.0.1），不允许",
        f"http://[::1]:{receiver.port}/hook": "回调地址指向内网或本机（::1），不允许",
        f"http://[::ffff:127.0.0.1]:{receiver.port}/hook": "回调地址指向内网或本机（::ffff:7f00:1），不允许",
        "http://169.254.169.254/latest/meta-data/iam/": "回调地址指向链路本地或云服务器元数据地址（169.254.169.254），不允许",
        "http://100.100.100.200/latest/meta-data/": "回调地址指向链路本地或云服务器元数据地址（100.100.100.200），不允许",
        "http://10.1.2.3/hook": "回调地址指向内网或本机（10.1.2.3），不允许",
        f"http://erp:secret@127.0.0.1:{receiver.port}/hook": "回调地址不能包含用户名或密码",
    }
    for url, message in cases.items():
        response = api.post("/api/v1/webhooks/", {"url": url, "event_types": EVENTS})
        assert response.status_code == 400, (url, response.content)
        error = error_of(response)
        assert error["message"] == message and error["details"] == [{"field": "url", "message": message}], url
        assert error["code"].startswith("outbound_")
    assert not WebhookSubscription.objects.exists()
    assert receiver.requests == []


def test_the_api_accepts_a_local_receiver_only_when_the_allowlist_names_it(make_api_client, receiver, settings,
                                                                            queued):
    _client, api = make_api_client(name="bj-erp", scopes=["webhooks:manage"], branch_code="BJ01")
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{receiver.port % 65535 + 1}", f"localhost:{receiver.port}"]
    assert api.post("/api/v1/webhooks/", {"url": receiver.url, "event_types": EVENTS}).status_code == 400
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{receiver.port}"]
    response = api.post("/api/v1/webhooks/", {"url": receiver.url, "event_types": EVENTS})
    assert response.status_code == 201, response.content
    # a public-looking URL is fine without any allow-list
    settings.OUTBOUND_ALLOWLIST = []
    assert api.post("/api/v1/webhooks/", {"url": "https://hooks.invalid/scrm", "event_types": EVENTS}).status_code \
        == 201


def test_http_urls_are_refused_in_production(make_api_client, settings, queued):
    _client, api = make_api_client(name="erp", scopes=["webhooks:manage"])
    settings.SCRM_ENV = "production"
    response = api.post("/api/v1/webhooks/", {"url": "http://hooks.invalid/scrm", "event_types": EVENTS})
    assert response.status_code == 400 and error_of(response)["message"] == "回调地址必须使用 https"
    assert api.post("/api/v1/webhooks/", {"url": "https://hooks.invalid/scrm", "event_types": EVENTS}).status_code \
        == 201


# --- registration on the admin page --------------------------------------------------------------

def test_the_admin_page_refuses_a_local_receiver_next_to_the_field(client, admin_user, receiver, settings, queued):
    client.force_login(admin_user)
    response = client.post("/integrations/webhooks/", {"url": receiver.url, "event_types": EVENTS})
    assert response.status_code == 400
    assert response.context["form"].errors["url"] == ["回调地址指向内网或本机（127.0.0.1），不允许"]
    assert b'data-testid="error-url"' in response.content
    assert not WebhookSubscription.objects.exists() and receiver.requests == []

    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{receiver.port}"]
    assert client.post("/integrations/webhooks/", {"url": receiver.url, "event_types": EVENTS}).status_code == 200
    assert WebhookSubscription.objects.get().url == receiver.url


# --- send time: rows already stored ----------------------------------------------------------------

def stored_subscription(url):
    """A subscription written straight to the database, past the registration check (an old row)."""
    from core import crypto

    return WebhookSubscription.objects.create(name="old", url=url, event_types=EVENTS,
                                              secret_encrypted=crypto.encrypt("whsec_old_secret_0123456789"))


def test_a_stored_local_url_is_refused_at_send_time_and_the_delivery_dies(db, receiver, queued):
    stored_subscription(receiver.url)
    delivery = emit_one().deliveries.get()
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert receiver.requests == []
    assert (result.status, result.attempts, result.last_status_code, result.last_response_bytes) == \
        (Status.DEAD, 1, None, None)
    assert result.last_error == "回调地址指向内网或本机（127.0.0.1），不允许"


def test_a_stored_url_is_sent_to_when_the_allowlist_names_it(db, receiver, settings, queued):
    stored_subscription(receiver.url)
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{receiver.port}"]
    delivery = emit_one().deliveries.get()
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (result.status, result.last_status_code, result.last_response_bytes) == (Status.SUCCEEDED, 200, 2)
    assert len(receiver.requests) == 1


def test_a_name_that_now_resolves_to_a_local_address_is_refused_at_send_time(db, receiver, monkeypatch, queued):
    """Registered while it pointed somewhere public (or nowhere); the DNS answer changed since."""
    stored_subscription(f"http://hooks.example.com:{receiver.port}/hook")
    monkeypatch.setattr(outbound, "host_resolve", lambda host, port: ["127.0.0.1"])
    delivery = emit_one().deliveries.get()
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert result.status == Status.DEAD and result.last_error == "回调地址指向内网或本机（127.0.0.1），不允许"
    assert receiver.requests == []


def test_a_name_that_does_not_resolve_is_retried_not_killed(db, queued):
    stored_subscription("https://hooks.invalid/hook")
    delivery = emit_one().deliveries.get()
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert result.status == Status.RETRYING and result.last_error == "回调地址的主机名无法解析（hooks.invalid）"


def test_a_redirect_to_an_internal_address_is_not_followed(db, receiver, settings, queued):
    """The allow-listed receiver answers 302 towards another local receiver (not allow-listed, though the
    guard is not what stops it here): the redirect is not followed, the attempt counts as failed."""
    inside, inside_server = receiver_start()
    try:
        receiver.statuses, receiver.location = [302], inside.url
        stored_subscription(receiver.url)
        settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{receiver.port}"]
        delivery = emit_one().deliveries.get()
        result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
        assert (result.status, result.last_status_code, result.last_error) == (Status.RETRYING, 302, "HTTP 302")
        assert len(receiver.requests) == 1 and inside.requests == []
    finally:
        inside_server.shutdown()
        inside_server.server_close()


# --- bodies stored before this change ------------------------------------------------------------------

def test_the_migration_drops_stored_answer_bodies(db, queued):
    import importlib

    scrub = importlib.import_module("integrations.migrations.0003_webhookdelivery_drop_stored_bodies").SCRUB
    stored_subscription("https://hooks.invalid/hook")
    delivery = emit_one().deliveries.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(last_status_code=500,
                                                          last_error="HTTP 500: root:x:0:0:root:/root:/bin/bash")
    second = emit_one().deliveries.get()
    WebhookDelivery.objects.filter(pk=second.pk).update(last_error="ConnectionError: refused")
    with connection.cursor() as cursor:
        cursor.execute(scrub)
    assert WebhookDelivery.objects.get(pk=delivery.pk).last_error == "HTTP 500"
    assert WebhookDelivery.objects.get(pk=second.pk).last_error == "ConnectionError: refused"
