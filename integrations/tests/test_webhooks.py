"""Outbound webhooks against a real HTTP receiver: outbox, signature, retries, dead, redelivery,
branch filtering, claiming due deliveries, the hooks that emit, the pages, and one run through a
real Celery worker."""

import json
import threading
import time
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from core.models import AuditLog, Branch
from customers.ingest import customer_bulk_upsert
from customers.services import task_complete
from customers.tests.factories import CustomerFactory, TaskFactory
from integrations import tasks, webhooks
from integrations.models import ApiClient, WebhookDelivery, WebhookEvent, WebhookSubscription
from integrations.tests.http_receiver import receiver_start
from integrations.webhooks import (
    CLAIM_LEASE,
    MAX_ATTEMPTS,
    WebhookEventType,
    webhook_delivery_attempt,
    webhook_delivery_redeliver,
    webhook_event_emit,
    webhook_signature_verify,
    webhook_subscription_create,
)
from tagging.models import Tag
from tagging.services import customer_tag_add, customer_tag_remove

Status = WebhookDelivery.Status
SECRET = "whsec_test_secret_0123456789"


@pytest.fixture
def receiver(settings):
    """A local receiver, and an OUTBOUND_ALLOWLIST naming exactly it (the guard refuses 127.0.0.1 otherwise).
    Subscriptions that are never delivered use https://hooks.invalid/… (never resolves: accepted when saved)."""
    receiver, server = receiver_start()
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{server.server_address[1]}"]
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def queued(monkeypatch):
    """Celery's .delay replaced by a recorder (no broker messages outlive a test)."""
    calls = {"deliver": [], "dispatch": 0}
    monkeypatch.setattr(tasks.webhook_deliver, "delay", lambda *args: calls["deliver"].append(args))

    def dispatch():
        calls["dispatch"] += 1

    monkeypatch.setattr(tasks.webhook_dispatch_due, "delay", dispatch)
    return calls


def subscribe(url, event_types=None, api_client=None, secret=SECRET):
    subscription, _ = webhook_subscription_create(
        actor="test", url=url, event_types=event_types or [WebhookEventType.TASK_COMPLETED], secret=secret,
        api_client=api_client)
    return subscription


def api_client_for(name, branch=None):
    return ApiClient.objects.create(name=name, key_prefix=name[:12], key_hash="x" * 64, branch=branch,
                                    scopes=["webhooks:manage"])


def emit_one(event_type=WebhookEventType.TASK_COMPLETED, payload=None, branch_id=None):
    with transaction.atomic():
        return webhook_event_emit(event_type=event_type, payload=payload or {"task": {"id": 1}}, branch_id=branch_id)


# --- the outbox ---------------------------------------------------------------------------

def test_emit_writes_the_event_and_deliveries_in_the_callers_transaction(db, queued,
                                                                         django_capture_on_commit_callbacks):
    sub = subscribe("https://hooks.invalid/a")
    other = subscribe("https://hooks.invalid/b", event_types=[WebhookEventType.CUSTOMER_CREATED])
    with django_capture_on_commit_callbacks(execute=True):
        event = emit_one(payload={"task": {"id": 7}})
    assert event.payload == {"task": {"id": 7}} and event.event_type == "task.completed"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.subscription, delivery.event, delivery.status, delivery.attempts) == (sub, event, "pending", 0)
    assert not other.deliveries.exists()
    # queued after commit, already claimed so the dispatcher does not queue it a second time
    assert queued["deliver"] == [(delivery.pk, 0)]
    assert delivery.next_attempt_at > timezone.now() + CLAIM_LEASE - timedelta(seconds=30)


def test_a_rolled_back_change_leaves_no_event_and_queues_nothing(db, queued, django_capture_on_commit_callbacks):
    subscribe("https://hooks.invalid/a")
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        with transaction.atomic():
            webhook_event_emit(event_type="task.completed", payload={"x": 1})
            assert WebhookEvent.objects.count() == 1
            raise RuntimeError("the change fails")
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()
    assert callbacks == [] and queued["deliver"] == []


def test_nothing_is_written_without_a_subscriber_and_unknown_types_are_refused(db, queued):
    assert emit_one() is None and not WebhookEvent.objects.exists()
    subscribe("https://hooks.invalid/a")
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError) as err:
        webhook_event_emit(event_type="customer.deleted", payload={})
    assert err.value.code == "webhook_event_type_unknown"


def test_branch_scoped_api_clients_only_get_their_branchs_events(db, queued):
    bj = Branch.objects.create(code="BJ01", name="北京")
    sh = Branch.objects.create(code="SH01", name="上海")
    firm = subscribe("https://hooks.invalid/firm")
    firm_client = subscribe("https://hooks.invalid/firm-client", api_client=api_client_for("firmwide"))
    bj_sub = subscribe("https://hooks.invalid/bj", api_client=api_client_for("bj-client", bj))
    sh_sub = subscribe("https://hooks.invalid/sh", api_client=api_client_for("sh-client", sh))
    inactive_client = api_client_for("bj-off", bj)
    inactive_client.active = False
    inactive_client.save()
    subscribe("https://hooks.invalid/off", api_client=inactive_client)

    bj_event = emit_one(branch_id=bj.pk)
    assert set(bj_event.deliveries.values_list("subscription", flat=True)) == {firm.pk, firm_client.pk, bj_sub.pk}
    sh_event = emit_one(branch_id=sh.pk)
    assert set(sh_event.deliveries.values_list("subscription", flat=True)) == {firm.pk, firm_client.pk, sh_sub.pk}
    no_branch = emit_one(branch_id=None)
    assert set(no_branch.deliveries.values_list("subscription", flat=True)) == {firm.pk, firm_client.pk}


# --- delivering ---------------------------------------------------------------------------

def test_delivery_is_signed_over_timestamp_and_body_with_the_documented_headers(db, queued, receiver):
    sub = subscribe(receiver.url)
    event = emit_one(payload={"task": {"id": 42, "title": "电话回访"}})
    delivery = event.deliveries.get()
    before = int(time.time())
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert result.status == Status.SUCCEEDED and result.attempts == 1 and result.last_status_code == 200
    assert result.delivered_at is not None and result.last_error == ""

    [request] = receiver.requests
    h = request.headers
    assert h["content-type"] == "application/json"
    assert h["x-scrm-event"] == "task.completed"
    assert h["x-scrm-delivery"] == str(delivery.pk)
    assert before <= int(h["x-scrm-timestamp"]) <= int(time.time())
    # an independent HMAC over b"<timestamp>." + raw body
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), h["x-scrm-timestamp"].encode() + b"." + request.body, hashlib.sha256)
    assert h["x-scrm-signature"] == "sha256=" + expected.hexdigest()
    assert webhook_signature_verify(secret=SECRET, timestamp=h["x-scrm-timestamp"], body=request.body,
                                    signature=h["x-scrm-signature"])
    assert not webhook_signature_verify(secret="whsec_other_secret_000000", timestamp=h["x-scrm-timestamp"],
                                        body=request.body, signature=h["x-scrm-signature"])
    assert not webhook_signature_verify(secret=SECRET, timestamp=h["x-scrm-timestamp"], body=request.body + b" ",
                                        signature=h["x-scrm-signature"])
    # a replay more than five minutes later is refused
    assert not webhook_signature_verify(secret=SECRET, timestamp=h["x-scrm-timestamp"], body=request.body,
                                        signature=h["x-scrm-signature"], now=int(h["x-scrm-timestamp"]) + 301)
    body = json.loads(request.body)
    assert body == {"id": event.pk, "type": "task.completed", "created_at": body["created_at"],
                    "data": {"task": {"id": 42, "title": "电话回访"}}}
    assert sub.secret_encrypted and SECRET not in sub.secret_encrypted


def test_500s_are_retried_with_exponential_backoff_then_succeed(db, queued, receiver):
    receiver.statuses = [500, 503]
    subscribe(receiver.url)
    delivery = emit_one().deliveries.get()

    first = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    assert (first.status, first.attempts, first.last_status_code) == (Status.RETRYING, 1, 500)
    assert "HTTP 500" in first.last_error
    delay = (first.next_attempt_at - timezone.now()).total_seconds()
    assert 25 <= delay <= 30

    second = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=1)
    assert (second.status, second.attempts, second.last_status_code) == (Status.RETRYING, 2, 503)
    assert 55 <= (second.next_attempt_at - timezone.now()).total_seconds() <= 60

    third = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=2)
    assert (third.status, third.attempts, third.last_status_code, third.last_error) == (Status.SUCCEEDED, 3, 200, "")
    assert len(receiver.requests) == 3
    # every attempt carries the same body and delivery id (receivers dedupe on them)
    assert len({r.body for r in receiver.requests}) == 1
    assert {r.headers["x-scrm-delivery"] for r in receiver.requests} == {str(delivery.pk)}


def attempt_when_due(delivery_id: int, expected_attempts: int):
    """The attempt made once its retry is due: the back-off and any circuit-breaker pause have run out."""
    WebhookSubscription.objects.filter(deliveries__pk=delivery_id).update(paused_until=None)
    return webhook_delivery_attempt(delivery_id=delivery_id, expected_attempts=expected_attempts)


def test_a_delivery_is_dead_after_max_attempts_and_connection_errors_count(db, queued, receiver, settings):
    receiver.default_status = 500
    subscribe(receiver.url)
    delivery = emit_one().deliveries.get()
    for n in range(MAX_ATTEMPTS):
        result = attempt_when_due(delivery.pk, n)
        assert result.attempts == n + 1
        assert result.status == (Status.DEAD if n + 1 == MAX_ATTEMPTS else Status.RETRYING)
    assert (result.next_attempt_at - timezone.now()) < timedelta(hours=2)
    assert webhook_delivery_attempt(delivery_id=delivery.pk) is None  # dead stays dead
    assert len(receiver.requests) == MAX_ATTEMPTS

    settings.OUTBOUND_ALLOWLIST = [*settings.OUTBOUND_ALLOWLIST, "127.0.0.1:9"]
    unreachable = subscribe("http://127.0.0.1:9/nobody-listens")
    d2 = WebhookDelivery.objects.get(subscription=unreachable, event=emit_one())
    result = webhook_delivery_attempt(delivery_id=d2.pk)
    assert result.status == Status.RETRYING and result.last_status_code is None and "ConnectionError" in result.last_error


def test_an_attempt_claimed_at_an_older_count_or_for_a_finished_delivery_sends_nothing(db, queued, receiver):
    subscribe(receiver.url)
    delivery = emit_one().deliveries.get()
    assert webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0).status == Status.SUCCEEDED
    assert webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=0) is None  # the duplicate message
    assert webhook_delivery_attempt(delivery_id=delivery.pk) is None  # succeeded
    assert webhook_delivery_attempt(delivery_id=987654321) is None  # gone
    assert len(receiver.requests) == 1


def test_redelivery_by_hand_sends_again_with_an_audit_row(db, queued, receiver, admin_user,
                                                         django_capture_on_commit_callbacks):
    receiver.default_status = 500
    subscribe(receiver.url)
    delivery = emit_one().deliveries.get()
    for n in range(MAX_ATTEMPTS):
        attempt_when_due(delivery.pk, n)
    delivery.refresh_from_db()
    assert delivery.status == Status.DEAD
    queued["deliver"].clear()

    receiver.default_status = 200
    with django_capture_on_commit_callbacks(execute=True):
        webhook_delivery_redeliver(actor=admin_user, delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING
    assert queued["deliver"] == [(delivery.pk, MAX_ATTEMPTS)]
    assert AuditLog.objects.filter(action="webhook.redeliver", target_id=str(delivery.pk), actor=admin_user).exists()
    result = webhook_delivery_attempt(delivery_id=delivery.pk, expected_attempts=MAX_ATTEMPTS)
    assert result.status == Status.SUCCEEDED and result.attempts == MAX_ATTEMPTS + 1
    assert len(receiver.requests) == MAX_ATTEMPTS + 1


# --- claiming due deliveries ----------------------------------------------------------------

def test_dispatch_claims_due_deliveries_once_and_moves_them_forward(db, queued):
    subscribe("https://hooks.invalid/a")
    events = [emit_one() for _ in range(5)]
    ids = [e.deliveries.get().pk for e in events]
    WebhookDelivery.objects.filter(pk__in=ids[:4]).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    WebhookDelivery.objects.filter(pk=ids[3]).update(status=Status.SUCCEEDED)
    WebhookDelivery.objects.filter(pk=ids[2]).update(status=Status.RETRYING, attempts=3)
    queued["deliver"].clear()

    assert webhooks.webhook_dispatch_due(batch=2) == 3  # two batches: 2 + 1
    assert sorted(queued["deliver"]) == sorted([(ids[0], 0), (ids[1], 0), (ids[2], 3)])
    for d in WebhookDelivery.objects.filter(pk__in=ids[:3]):
        assert d.next_attempt_at > timezone.now() + CLAIM_LEASE - timedelta(seconds=30)
    assert webhooks.webhook_dispatch_due() == 0  # claimed: a second dispatcher finds nothing


@pytest.mark.django_db(transaction=True)
def test_claiming_skips_rows_another_worker_holds(queued):
    subscribe("https://hooks.invalid/a")
    ids = [emit_one().deliveries.get().pk for _ in range(3)]
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    locked, release = threading.Event(), threading.Event()

    def hold_one():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.select_for_update().get(pk=ids[0])
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=hold_one)
    worker.start()
    assert locked.wait(10)
    try:
        started = time.monotonic()
        claimed = webhooks.webhook_deliveries_claim_due()
        assert time.monotonic() - started < 2  # skipped, not waited for
        assert sorted(pk for pk, _ in claimed) == ids[1:]
    finally:
        release.set()
        worker.join()
    assert [pk for pk, _ in webhooks.webhook_deliveries_claim_due()] == [ids[0]]


# --- the hooks that emit ---------------------------------------------------------------------

def event_payloads(event_type):
    return [e.payload for e in WebhookEvent.objects.filter(event_type=event_type).order_by("pk")]


def test_task_completed_is_emitted_after_commit(db, queued, advisor, django_capture_on_commit_callbacks):
    subscribe("https://hooks.invalid/a")
    customer = CustomerFactory(advisor=advisor)
    task = TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        task_complete(user=advisor, task=task, outcome="reached")
    [payload] = event_payloads("task.completed")
    assert payload["task"]["id"] == task.pk and payload["task"]["outcome"] == "reached"
    assert payload["customer"] == {"external_id": customer.external_id, "branch": "BJ01"}
    assert WebhookEvent.objects.get().branch_id == customer.branch_id


def test_tag_added_and_removed_are_emitted(db, queued, django_capture_on_commit_callbacks):
    subscribe("https://hooks.invalid/a", event_types=["customer.tag_added", "customer.tag_removed"])
    customer = CustomerFactory()
    tag = Tag.objects.get(code="margin_intent")
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_add(customer=customer, tag=tag, source="manual", actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_add(customer=customer, tag=tag, source="manual", actor="test")  # unchanged: no event
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_remove(customer=customer, tag=tag, source="manual", actor="test")
    added, removed = event_payloads("customer.tag_added"), event_payloads("customer.tag_removed")
    assert added == [{"customer": {"external_id": customer.external_id, "branch": "BJ01"},
                      "tag": {"code": "margin_intent", "name": tag.name}, "source": "manual"}]
    assert len(removed) == 1 and removed[0]["tag"]["code"] == "margin_intent"
    assert WebhookDelivery.objects.count() == 2


def test_tag_change_rolled_back_emits_nothing(db, queued, django_capture_on_commit_callbacks):
    subscribe("https://hooks.invalid/a", event_types=["customer.tag_added"])
    customer = CustomerFactory()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        customer_tag_add(customer=customer, tag=Tag.objects.get(code="margin_intent"), source="manual", actor="t")
        raise RuntimeError
    assert not WebhookEvent.objects.exists()


def test_bulk_upsert_emits_created_and_updated_per_customer(db, queued, advisor, django_capture_on_commit_callbacks):
    subscribe("https://hooks.invalid/a", event_types=["customer.created", "customer.updated"])
    rows = [{"external_id": "W0001", "name": "甲", "branch": "BJ01", "advisor": "E9001", "risk_level": "C3"},
            {"external_id": "W0002", "name": "乙", "branch": "BJ01"}]
    with django_capture_on_commit_callbacks(execute=True):
        customer_bulk_upsert(actor_label="t", rows=rows)
    created = event_payloads("customer.created")
    assert [p["customer"]["external_id"] for p in created] == ["W0001", "W0002"]
    assert created[0]["customer"]["advisor"] == "E9001" and created[0]["customer"]["branch"] == "BJ01"
    assert "name" not in created[0]["customer"] and "mobile" not in created[0]["customer"]
    with django_capture_on_commit_callbacks(execute=True):
        customer_bulk_upsert(actor_label="t", rows=[{**rows[0], "risk_level": "C4"}, rows[1]])
    assert [(p["customer"]["external_id"], p["customer"]["risk_level"]) for p in event_payloads("customer.updated")] \
        == [("W0001", "C4")]
    with django_capture_on_commit_callbacks(execute=True):
        customer_bulk_upsert(actor_label="t", rows=rows, dry_run=True)
    assert WebhookEvent.objects.count() == 3


def test_tier_changes_are_one_event_per_changed_customer(db, queued, django_capture_on_commit_callbacks):
    from tagging.tiers import tier_run_compute

    subscribe("https://hooks.invalid/a", event_types=["customer.tier_changed"])
    customers = [CustomerFactory() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        run = tier_run_compute(as_of=date(2026, 1, 5))
    payloads = event_payloads("customer.tier_changed")
    assert sorted(p["customer"]["external_id"] for p in payloads) == sorted(c.external_id for c in customers)
    assert {(p["from"], p["to"], p["run_id"]) for p in payloads} == {(None, "no_trade", run.pk)}
    with django_capture_on_commit_callbacks(execute=True):
        tier_run_compute(as_of=date(2026, 1, 5))  # nothing changed
    assert WebhookEvent.objects.count() == 3


def test_segment_rebuild_tells_each_branch_who_joined_and_left(db, queued, django_capture_on_commit_callbacks):
    from customers.models import Customer
    from segments.models import Segment
    from segments.services import segment_rebuild

    sh = Branch.objects.create(code="SH01", name="SH01 营业部")
    bj = Branch.objects.create(code="BJ01", name="BJ01 营业部")
    firm = subscribe("https://hooks.invalid/firm", event_types=["segment.members_changed"])
    sh_only = subscribe("https://hooks.invalid/sh", event_types=["segment.members_changed"],
                        api_client=api_client_for("sh-erp", branch=sh))
    risky = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}
    segment = Segment.objects.create(name="高风险", rule=risky)
    bj_a, bj_b = CustomerFactory(branch=bj, risk_level="C4"), CustomerFactory(branch=bj, risk_level="C5")
    sh_a = CustomerFactory(branch=sh, risk_level="C4")
    CustomerFactory(branch=sh, risk_level="C2")
    with django_capture_on_commit_callbacks(execute=True):
        rebuild = segment_rebuild(segment_id=segment.pk)
    by_branch = {p["branch"]: p for p in event_payloads("segment.members_changed")}
    assert set(by_branch) == {"BJ01", "SH01"}
    assert by_branch["BJ01"]["joined"] == sorted([bj_a.external_id, bj_b.external_id])
    assert by_branch["SH01"] == {"segment": {"id": segment.pk, "name": "高风险"}, "rebuild_id": rebuild.pk,
                                 "size": 3, "at": by_branch["SH01"]["at"], "branch": "SH01",
                                 "joined": [sh_a.external_id], "left": []}
    # the branch-scoped subscriber hears only about its branch; the firm-wide one about both
    assert WebhookDelivery.objects.filter(subscription=sh_only).count() == 1
    assert WebhookDelivery.objects.filter(subscription=firm).count() == 2

    Customer.objects.filter(pk=bj_b.pk).update(risk_level="C3")
    with django_capture_on_commit_callbacks(execute=True):
        segment_rebuild(segment_id=segment.pk)
    last = WebhookEvent.objects.filter(event_type="segment.members_changed").latest("pk").payload
    assert (last["branch"], last["joined"], last["left"], last["size"]) == ("BJ01", [], [bj_b.external_id], 2)
    with django_capture_on_commit_callbacks(execute=True):
        segment_rebuild(segment_id=segment.pk)  # nobody moved: no event
    assert WebhookEvent.objects.filter(event_type="segment.members_changed").count() == 3


# --- pages ---------------------------------------------------------------------------------

def test_admin_creates_a_subscription_sees_the_secret_once_and_deletes_it(client, admin_user, queued):
    client.force_login(admin_user)
    response = client.post("/integrations/webhooks/", {"url": "https://example.com/hook", "name": "ERP",
                                                       "event_types": ["customer.created", "task.completed"]})
    assert response.status_code == 200
    sub = WebhookSubscription.objects.get()
    assert sub.event_types == ["customer.created", "task.completed"] and sub.api_client is None
    secret = response.context["new_secret"]
    assert secret.startswith("whsec_") and secret.encode() in response.content
    assert secret.encode() not in client.get("/integrations/webhooks/").content  # shown once
    assert AuditLog.objects.filter(action="webhook.subscription_create").exists()

    bad = client.post("/integrations/webhooks/", {"url": "not a url", "event_types": []})
    assert bad.status_code == 400 and WebhookSubscription.objects.count() == 1

    client.post(f"/integrations/webhooks/{sub.pk}/delete/")
    assert not WebhookSubscription.objects.exists()


def test_delivery_log_and_redeliver_button(client, admin_user, queued, receiver):
    receiver.statuses = [500]
    sub = subscribe(receiver.url)
    delivery = emit_one().deliveries.get()
    webhook_delivery_attempt(delivery_id=delivery.pk)
    client.force_login(admin_user)
    page = client.get(f"/integrations/webhooks/{sub.pk}/")
    assert page.status_code == 200
    assert b"HTTP 500" in page.content and "重新投递".encode() in page.content
    # the status and the body's length, never the body
    assert b"receiver says no" not in page.content
    assert b'data-testid="delivery-length">16<' in page.content
    delivery.refresh_from_db()
    assert (delivery.last_error, delivery.last_response_bytes) == ("HTTP 500", len(b"receiver says no"))
    queued["deliver"].clear()
    response = client.post(f"/integrations/webhooks/deliveries/{delivery.pk}/redeliver/")
    assert response.status_code == 302
    assert queued["deliver"] == [(delivery.pk, 1)] or WebhookDelivery.objects.get(pk=delivery.pk).status == "pending"


def test_webhook_pages_name_event_types_in_words_each_on_its_own(client, admin_user, queued):
    """Event types are labels (客户新增), one badge each, on the list, the subscription's header and its deliveries."""
    sub = subscribe("https://example.com/hook", event_types=[WebhookEventType.CUSTOMER_CREATED,
                                                             WebhookEventType.TASK_COMPLETED])
    emit_one()
    client.force_login(admin_user)
    listing = client.get("/integrations/webhooks/").content.decode()
    cell = listing.split(f'data-testid="webhook-events-{sub.pk}">')[1].split("</div>")[0]
    assert cell == '<span class="badge bg-blue-lt">客户新增</span><span class="badge bg-blue-lt">任务完成</span>'
    detail = client.get(f"/integrations/webhooks/{sub.pk}/").content.decode()
    assert "客户新增</span><span" in detail.split('data-testid="webhook-events">')[1].split("</div>")[0]
    assert 'data-testid="delivery-event">任务完成<' in detail


def test_webhook_pages_are_404_for_other_roles(client, operator, queued):
    sub = subscribe("https://hooks.invalid/a")
    client.force_login(operator)
    assert client.get("/integrations/webhooks/").status_code == 404
    assert client.get(f"/integrations/webhooks/{sub.pk}/").status_code == 404
    assert client.post(f"/integrations/webhooks/{sub.pk}/delete/").status_code == 404
    assert WebhookSubscription.objects.exists()


# --- end to end through a real worker --------------------------------------------------------

@pytest.fixture
def worker_receiver(worker_receiver_port, settings):
    """A receiver on the one port the session's worker has in its OUTBOUND_ALLOWLIST (conftest.py)."""
    receiver, server = receiver_start(port=worker_receiver_port)
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{worker_receiver_port}"]
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_event_reaches_the_receiver_through_a_real_worker(celery_worker, worker_receiver, advisor):
    receiver = worker_receiver
    receiver.statuses = [500]  # first attempt fails; the dispatcher (as beat would) claims the retry
    subscribe(receiver.url)
    customer = CustomerFactory(advisor=advisor)
    task = TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now())
    task_complete(user=advisor, task=task, outcome="converted")  # commits; the hook queues the delivery
    assert receiver.wait_for(1, timeout=30), "the worker did not deliver"
    delivery = WebhookDelivery.objects.get()
    deadline = time.monotonic() + 10
    while delivery.status != Status.RETRYING and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert delivery.status == Status.RETRYING
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    tasks.webhook_dispatch_due.delay()
    assert receiver.wait_for(2, timeout=30), "the retry was not delivered"
    deadline = time.monotonic() + 10
    while delivery.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert delivery.status == Status.SUCCEEDED and delivery.attempts == 2
    body = json.loads(receiver.requests[1].body)
    assert body["type"] == "task.completed" and body["data"]["task"]["id"] == task.pk
    assert webhook_signature_verify(secret=SECRET, timestamp=receiver.requests[1].headers["x-scrm-timestamp"],
                                    body=receiver.requests[1].body,
                                    signature=receiver.requests[1].headers["x-scrm-signature"])


# --- API ---------------------------------------------------------------------------------------

def api_key(name, scopes=("webhooks:manage",), branch_code=None):
    from integrations.api_clients import api_client_create

    client, key = api_client_create(actor="test", name=name, scopes=list(scopes), branch_code=branch_code)
    return client, {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_api_clients_manage_only_their_own_subscriptions(client, db, queued):
    Branch.objects.create(code="BJ01", name="北京")
    erp, erp_auth = api_key("erp", branch_code="BJ01")
    _other, other_auth = api_key("other")
    _readonly, readonly_auth = api_key("readonly", scopes=("customers:read",))

    response = client.post("/api/v1/webhooks/", {"url": "https://erp.example.com/hook", "event_types":
                                                 ["customer.tag_added", "task.completed"]},
                           content_type="application/json", **erp_auth)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["customer.tag_added", "task.completed"]
    subscription = WebhookSubscription.objects.get(pk=body["id"])
    assert subscription.api_client == erp and body["secret"] not in subscription.secret_encrypted

    listed = client.get("/api/v1/webhooks/", **erp_auth).json()["data"]
    assert [s["id"] for s in listed] == [subscription.pk] and "secret" not in listed[0]
    assert client.get("/api/v1/webhooks/", **other_auth).json()["data"] == []
    assert client.get("/api/v1/webhooks/", **readonly_auth).status_code == 403
    assert client.get("/api/v1/webhooks/").status_code == 401

    bad = client.post("/api/v1/webhooks/", {"url": "ftp://x", "event_types": ["customer.deleted"]},
                      content_type="application/json", **erp_auth)
    assert bad.status_code == 400 and bad.json()["error"]["code"]

    assert client.delete(f"/api/v1/webhooks/{subscription.pk}/", **other_auth).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{subscription.pk}/", **erp_auth).status_code == 204
    assert not WebhookSubscription.objects.exists()
