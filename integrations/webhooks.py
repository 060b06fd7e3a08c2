"""Outbound signed webhooks: the transactional outbox, delivery with retries, subscriptions.

Outbox: :func:`webhook_event_emit` writes the WebhookEvent row and one WebhookDelivery per active
matching subscription in the caller's transaction, so a rolled-back change never announces
itself; delivery tasks are queued only after commit.

Delivery (:func:`webhook_delivery_attempt`): one HTTP POST of the event's JSON body, signed as
``X-SCRM-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>`` with
``X-SCRM-Timestamp`` in unix seconds; receivers must reject timestamps more than 5 minutes old
(replays). 2xx is success; anything else (or no answer within 10 s) is retried after
``30 s × 2^(attempts-1)`` until ``MAX_ATTEMPTS``, then the delivery is dead. Redirects are not
followed. Of the answer only the status and the body's length are kept, never the body.

Callback URLs are user input (admin page, REST API): core/outbound.py checks them when a
subscription is created and again before every POST, which goes to the address that check resolved
(no internal, link-local or metadata addresses unless OUTBOUND_ALLOWLIST names them); a URL the
guard refuses at send time makes the delivery dead at once.

Isolation: deliveries run on their own Celery queue (``webhooks``, a worker of their own with a bounded number of
slots), connect within ``CONNECT_TIMEOUT_SECONDS`` and wait at most ``REQUEST_TIMEOUT_SECONDS`` for an answer, so a
slow receiver never holds up SOP sends or other work. Circuit breaker: after ``BREAKER_THRESHOLD`` failed attempts
in a row a subscription is paused (``paused_until``: 1 minute, doubling with each further failure up to 30 minutes);
its due deliveries wait, untried, until then, and the next attempt either closes the breaker (success) or pauses it
longer. The subscription list shows the pause, and an admin can resume at once.

No long ETAs: every delivery that is due (``next_attempt_at <= now``) is claimed by the
``integrations.webhook_dispatch_due`` beat task with ``FOR UPDATE SKIP LOCKED``; claiming moves
``next_attempt_at`` forward by ``CLAIM_LEASE`` so a second dispatcher does not take it again, and
a claim whose worker died is picked up once the lease runs out. Each queued task carries the
attempt count it was claimed at; an attempt that finds the count moved on (someone else already
made that attempt) does nothing, so a message delivered twice is not sent twice.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core import crypto, outbound
from core.errors import ApplicationError
from core.services import audit_record
from integrations.models import ApiClient, WebhookDelivery, WebhookEvent, WebhookSubscription

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 3
REQUEST_TIMEOUT_SECONDS = 10
BREAKER_THRESHOLD = 3
BREAKER_PAUSE_BASE = timedelta(minutes=1)
BREAKER_PAUSE_MAX = timedelta(minutes=30)
CLAIM_LEASE = timedelta(minutes=5)  # > timeout + queue latency; a lost claim is retried after it
DISPATCH_BATCH = 500
DISPATCH_MAX_BATCHES = 20
DIRECT_ENQUEUE_LIMIT = 200  # more deliveries than this in one commit are left to the dispatcher
SIGNATURE_TOLERANCE_SECONDS = 300
USER_AGENT = "SCRM-Webhooks/1"

Status = WebhookDelivery.Status


class WebhookEventType(models.TextChoices):
    CUSTOMER_CREATED = "customer.created", _("客户新增")
    CUSTOMER_UPDATED = "customer.updated", _("客户更新")
    CUSTOMER_TAG_ADDED = "customer.tag_added", _("客户打标签")
    CUSTOMER_TAG_REMOVED = "customer.tag_removed", _("客户移除标签")
    CUSTOMER_TIER_CHANGED = "customer.tier_changed", _("客户分层变化")
    TASK_COMPLETED = "task.completed", _("任务完成")
    SOP_STEP_DONE = "sop.step_done", _("SOP 步骤完成")
    WECOM_CONTACT_ADDED = "wecom.contact_added", _("企业微信添加客户")
    SEGMENT_MEMBERS_CHANGED = "segment.members_changed", _("客群成员变化")



class WebhookError(enum.StrEnum):
    EVENT_TYPE_UNKNOWN = "webhook_event_type_unknown"
    EVENT_TYPES_REQUIRED = "webhook_event_types_required"
    URL_INVALID = "webhook_url_invalid"
    SECRET_TOO_SHORT = "webhook_secret_too_short"
    NAME_REQUIRED = "webhook_name_required"


# --- signing ---------------------------------------------------------------------------------

def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 keyed with the secret over ``b"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_signature_verify(*, secret: str, timestamp: str, body: bytes, signature: str,
                             now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """What a receiver does: constant-time compare, and refuse timestamps outside the tolerance."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(webhook_signature(secret=secret, timestamp=ts, body=body), signature or "")


def webhook_body(event: WebhookEvent) -> bytes:
    """The JSON body of an event; the same bytes on every attempt (receivers dedupe on ``id``)."""
    document = {"id": event.pk, "type": event.event_type, "created_at": event.created_at.isoformat(),
                "data": event.payload}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), cls=DjangoJSONEncoder).encode()


# --- the outbox ------------------------------------------------------------------------------

def _check_event_type(event_type: str) -> None:
    if event_type not in WebhookEventType.values:
        raise ApplicationError(WebhookError.EVENT_TYPE_UNKNOWN, f"未知的事件类型：{event_type}")


def _any_subscriber(event_type: str) -> bool:
    return WebhookSubscription.objects.filter(active=True, event_types__contains=[event_type]).exists()


_DELIVERIES_INSERT = f"""
INSERT INTO {WebhookDelivery._meta.db_table} AS d
    (subscription_id, event_id, status, attempts, next_attempt_at, last_error)
SELECT s.id, e.id, 'pending', 0, now() + %(delay)s, ''
FROM unnest(%(event_ids)s::bigint[], %(branch_ids)s::bigint[]) AS e(id, branch_id)
JOIN {WebhookSubscription._meta.db_table} s ON s.active AND s.event_types @> %(event_type)s::jsonb
LEFT JOIN {ApiClient._meta.db_table} c ON c.id = s.api_client_id
WHERE c.id IS NULL OR (c.active AND (c.branch_id IS NULL OR c.branch_id = e.branch_id))
ORDER BY e.id, s.id
ON CONFLICT (subscription_id, event_id) DO NOTHING
RETURNING d.id, d.attempts
"""


def _deliveries_create(*, event_type: str, event_ids: list[int], branch_ids: list[int | None]) -> int:
    """One delivery per (event, matching subscription), in the current transaction; queue after commit.

    A subscription owned by a branch-scoped API client only matches events of that branch (events
    without a branch go to firm-wide subscribers only). A small batch is queued straight away
    (already claimed for ``CLAIM_LEASE``); a big one is left due for the dispatcher.
    """
    if not event_ids:
        return 0
    direct = len(event_ids) <= DIRECT_ENQUEUE_LIMIT
    with connection.cursor() as cursor:
        cursor.execute(_DELIVERIES_INSERT, {
            "delay": CLAIM_LEASE if direct else timedelta(0), "event_ids": event_ids, "branch_ids": branch_ids,
            "event_type": json.dumps([event_type]),
        })
        rows = cursor.fetchall()
    if rows:
        from integrations import tasks

        if direct and len(rows) <= DIRECT_ENQUEUE_LIMIT:
            transaction.on_commit(lambda: [tasks.webhook_deliver.delay(pk, attempts) for pk, attempts in rows])
        else:
            if direct:  # many subscribers: make them due again for the dispatcher
                WebhookDelivery.objects.filter(pk__in=[pk for pk, _a in rows]).update(next_attempt_at=timezone.now())
            transaction.on_commit(tasks.webhook_dispatch_due.delay)
    return len(rows)


def webhook_events_emit(*, event_type: str, events: Iterable[tuple[dict, int | None]]) -> list[int]:
    """Write many events of one type (``(payload, branch_id)`` pairs) and their deliveries.

    Returns the new event ids. Nothing is written when no active subscription wants this type:
    the outbox only holds what someone will receive.
    """
    _check_event_type(event_type)
    if not _any_subscriber(event_type):
        return []
    events = list(events)
    if not events:
        return []
    with transaction.atomic():
        created = WebhookEvent.objects.bulk_create(
            [WebhookEvent(event_type=event_type, payload=payload, branch_id=branch_id) for payload, branch_id in events]
        )
        ids = [e.pk for e in created]
        _deliveries_create(event_type=event_type, event_ids=ids, branch_ids=[b for _p, b in events])
    return ids


def webhook_event_emit(*, event_type: str, payload: dict, branch_id: int | None = None) -> WebhookEvent | None:
    """Outbox one event in the current transaction (see the module doc); None when nobody subscribes."""
    ids = webhook_events_emit(event_type=event_type, events=[(payload, branch_id)])
    return WebhookEvent.objects.get(pk=ids[0]) if ids else None


def webhook_events_emit_sql(*, event_type: str, select_sql: str, params: dict) -> int:
    """Set-based emit: ``select_sql`` yields ``(payload jsonb, branch_id)`` rows; one INSERT … SELECT
    writes the events, one more their deliveries. Returns the number of events."""
    _check_event_type(event_type)
    if not _any_subscriber(event_type):
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WebhookEvent._meta.db_table} (event_type, payload, branch_id) "
            f"SELECT %(event_type)s, q.payload, q.branch_id FROM ({select_sql}) AS q(payload, branch_id) "
            "RETURNING id, branch_id",
            {**params, "event_type": event_type},
        )
        rows = cursor.fetchall()
        _deliveries_create(event_type=event_type, event_ids=[r[0] for r in rows], branch_ids=[r[1] for r in rows])
    return len(rows)


# --- delivering ------------------------------------------------------------------------------

def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class _PostResult:
    status_code: int | None  # None when no answer came
    response_bytes: int | None
    error: str  # "" on success; never the answer's body
    final: bool = False  # the URL guard refused the address: retrying cannot help


def _post(*, url: str, body: bytes, headers: dict) -> _PostResult:
    """One POST through the outbound guard (checked now, sent to the checked address, no redirects)."""
    try:
        target = outbound.outbound_target_resolve(url=url, field="url", label=gettext("回调地址"))
    except outbound.OutboundURLRefused as exc:
        return _PostResult(None, None, exc.message[:500], final=not exc.temporary)
    try:
        response = outbound.outbound_post(target=target, data=body, headers=headers,
                                          timeout=(CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS))
    except requests.RequestException as exc:
        return _PostResult(None, None, f"{type(exc).__name__}: {exc}"[:500])
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return _PostResult(response.status_code, response.length, error)


def webhook_delivery_attempt(*, delivery_id: int, expected_attempts: int | None = None) -> WebhookDelivery | None:
    """Make one attempt at a pending/retrying delivery; None when there is nothing to do.

    The row stays locked (FOR UPDATE) while the request is in flight (≤ 10 s), so two workers
    never send the same delivery at once; the second one waits, then sees the attempt count moved
    on (``expected_attempts``) or the delivery finished, and returns.
    """
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(of=("self",))
                    .select_related("subscription", "event")
                    .filter(pk=delivery_id, status__in=[Status.PENDING, Status.RETRYING]).first())
        if delivery is None or (expected_attempts is not None and delivery.attempts != expected_attempts):
            return None
        subscription, event = delivery.subscription, delivery.event
        if not subscription.active:
            delivery.status, delivery.last_error = Status.DEAD, "订阅已停用"
            delivery.save(update_fields=["status", "last_error"])
            return delivery
        if subscription.paused_until and subscription.paused_until > timezone.now():  # claimed before the pause
            delivery.next_attempt_at = subscription.paused_until
            delivery.save(update_fields=["next_attempt_at"])
            return None
        body = webhook_body(event)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-SCRM-Event": event.event_type,
            "X-SCRM-Delivery": str(delivery.pk),
            "X-SCRM-Timestamp": str(timestamp),
            "X-SCRM-Signature": webhook_signature(secret=crypto.decrypt(subscription.secret_encrypted),
                                                  timestamp=timestamp, body=body),
        }
        result = _post(url=subscription.url, body=body, headers=headers)
        error = result.error
        delivery.attempts += 1
        delivery.last_status_code = result.status_code
        delivery.last_response_bytes = result.response_bytes
        delivery.last_error = error
        now = timezone.now()
        if not error:
            delivery.status, delivery.delivered_at = Status.SUCCEEDED, now
        elif result.final or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = Status.DEAD
        else:
            delivery.status, delivery.next_attempt_at = Status.RETRYING, now + _backoff(delivery.attempts)
        paused_until = _breaker_record(subscription_id=subscription.pk, failed=bool(error) and not result.final, now=now)
        if paused_until and delivery.status == Status.RETRYING:
            delivery.next_attempt_at = max(delivery.next_attempt_at, paused_until)
        delivery.save(update_fields=["attempts", "last_status_code", "last_response_bytes", "last_error", "status",
                                     "delivered_at", "next_attempt_at"])
    if delivery.status == Status.DEAD:
        logger.warning("webhook delivery %s is dead after %s attempts: %s", delivery.pk, delivery.attempts, error)
    return delivery


def _breaker_record(*, subscription_id: int, failed: bool, now) -> object | None:
    """Count a failed attempt (opening the breaker at the threshold) or close it on success; returns the time
    deliveries to this receiver wait for, or None."""
    if not failed:
        WebhookSubscription.objects.filter(pk=subscription_id).exclude(consecutive_failures=0, paused_until=None) \
            .update(consecutive_failures=0, paused_until=None)
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {WebhookSubscription._meta.db_table} SET consecutive_failures = consecutive_failures + 1 "
                       "WHERE id = %s RETURNING consecutive_failures", [subscription_id])
        failures = cursor.fetchone()[0]
    if failures < BREAKER_THRESHOLD:
        return None
    pause = min(BREAKER_PAUSE_BASE * 2 ** (failures - BREAKER_THRESHOLD), BREAKER_PAUSE_MAX)
    WebhookSubscription.objects.filter(pk=subscription_id).update(paused_until=now + pause)
    if failures == BREAKER_THRESHOLD:
        logger.warning("webhook subscription %s paused after %s failed attempts in a row", subscription_id, failures)
    return now + pause


@transaction.atomic
def webhook_subscription_resume(*, actor, subscription: WebhookSubscription) -> None:
    """An admin closes the breaker: the paused deliveries are due again now (audited)."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(consecutive_failures=0, paused_until=None)
    WebhookDelivery.objects.filter(subscription=subscription, status__in=[Status.PENDING, Status.RETRYING]) \
        .update(next_attempt_at=Now())  # the database's clock, as the claim compares
    audit_record(actor=actor, action="webhook.resume", target_type="webhook_subscription", target_id=subscription.pk)


_CLAIM_SQL = f"""
WITH due AS (
    SELECT d.id FROM {WebhookDelivery._meta.db_table} d
    JOIN {WebhookSubscription._meta.db_table} s ON s.id = d.subscription_id
    WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= statement_timestamp()
      AND (s.paused_until IS NULL OR s.paused_until <= statement_timestamp())
    ORDER BY d.next_attempt_at, d.id
    LIMIT %(batch)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE {WebhookDelivery._meta.db_table} AS d SET next_attempt_at = statement_timestamp() + %(lease)s
FROM due WHERE d.id = due.id
RETURNING d.id, d.attempts
"""


def webhook_deliveries_claim_due(*, batch: int = DISPATCH_BATCH) -> list[tuple[int, int]]:
    """Claim up to ``batch`` due deliveries: ``(id, attempts)`` pairs, each now leased for ``CLAIM_LEASE``.

    Rows another dispatcher (or a sending worker) holds are skipped, not waited for.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"batch": batch, "lease": CLAIM_LEASE})
        return [(pk, attempts) for pk, attempts in cursor.fetchall()]


def webhook_dispatch_due(*, batch: int = DISPATCH_BATCH, max_batches: int = DISPATCH_MAX_BATCHES) -> int:
    """Queue one delivery task per due delivery, in claimed batches; returns how many were queued."""
    from integrations import tasks

    queued = 0
    for _batch in range(max_batches):
        claimed = webhook_deliveries_claim_due(batch=batch)
        for pk, attempts in claimed:
            tasks.webhook_deliver.delay(pk, attempts)
        queued += len(claimed)
        if len(claimed) < batch:
            break
    return queued


@transaction.atomic
def webhook_delivery_redeliver(*, actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever its status (one more attempt for a dead one), with an audit row."""
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(paused_until=None)  # "now" means now
    delivery.status = Status.PENDING
    delivery.next_attempt_at = timezone.now() + CLAIM_LEASE
    delivery.save(update_fields=["status", "next_attempt_at"])
    audit_record(actor=actor, action="webhook.redeliver", target_type="webhook_delivery", target_id=delivery.pk,
                 details={"subscription": delivery.subscription_id, "event": delivery.event_id})
    from integrations import tasks

    pk, attempts = delivery.pk, delivery.attempts
    transaction.on_commit(lambda: tasks.webhook_deliver.delay(pk, attempts))
    return delivery


# --- subscriptions ---------------------------------------------------------------------------

def webhook_secret_generate() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


@transaction.atomic
def webhook_subscription_create(*, actor, url: str, event_types: list[str], name: str = "",
                                secret: str | None = None,
                                api_client: ApiClient | None = None) -> tuple[WebhookSubscription, str]:
    """Create a subscription; returns it with the plaintext secret, which is shown once and stored encrypted."""
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ApplicationError(WebhookError.URL_INVALID, "回调地址应为 http(s) 网址",
                               [{"field": "url", "message": "回调地址应为 http(s) 网址"}]) from None
    # user input: no internal/link-local/metadata address, https in production (checked again on every send)
    outbound.outbound_url_validate(url=url, field="url", label=gettext("回调地址"))
    event_types = list(dict.fromkeys(event_types or []))
    if not event_types:
        raise ApplicationError(WebhookError.EVENT_TYPES_REQUIRED, "请至少选择一种事件",
                               [{"field": "event_types", "message": "请至少选择一种事件"}])
    unknown = [t for t in event_types if t not in WebhookEventType.values]
    if unknown:
        message = f"未知的事件类型：{', '.join(map(str, unknown))}"
        raise ApplicationError(WebhookError.EVENT_TYPE_UNKNOWN, message, [{"field": "event_types", "message": message}])
    secret = (secret or "").strip() or webhook_secret_generate()
    if len(secret) < 16:
        raise ApplicationError(WebhookError.SECRET_TOO_SHORT, "密钥至少 16 个字符",
                               [{"field": "secret", "message": "密钥至少 16 个字符"}])
    name = (name or "").strip()[:100] or url[:100]
    subscription = WebhookSubscription.objects.create(
        name=name, url=url, event_types=event_types, secret_encrypted=crypto.encrypt(secret), api_client=api_client,
    )
    audit_record(actor=actor, action="webhook.subscription_create", target_type="webhook_subscription",
                 target_id=subscription.pk, details={"url": url, "event_types": event_types,
                                                     "api_client": api_client.pk if api_client else None})
    return subscription, secret


@transaction.atomic
def webhook_subscription_delete(*, actor, subscription: WebhookSubscription) -> None:
    """Delete a subscription and its deliveries. An event committed at the same moment may have queued a delivery
    for it after the deliveries were collected; the foreign key is checked at once (not at commit, where it would
    surface as a 500), and the delete is tried again with the new rows."""
    audit_record(actor=actor, action="webhook.subscription_delete", target_type="webhook_subscription",
                 target_id=subscription.pk, details={"url": subscription.url})
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for attempt in range(3):
        try:
            with transaction.atomic():
                WebhookSubscription.objects.filter(pk=subscription.pk).delete()
            return
        except IntegrityError:
            if attempt == 2:
                raise


# --- selectors -------------------------------------------------------------------------------

def webhook_subscription_list(*, api_client: ApiClient | None = None, firm_wide: bool = False):
    """An API client's own subscriptions, or (``firm_wide``, for admins) all of them."""
    qs = WebhookSubscription.objects.select_related("api_client").order_by("-created_at", "-id")
    if firm_wide:
        return qs
    return qs.filter(api_client=api_client) if api_client is not None else qs.none()


def webhook_delivery_list(*, subscription: WebhookSubscription, limit: int = 200):
    return (WebhookDelivery.objects.filter(subscription=subscription).select_related("event")
            .order_by("-created_at", "-id")[:limit])


def webhook_delivery_counts(*, subscription_ids: list[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for row in (WebhookDelivery.objects.filter(subscription_id__in=subscription_ids)
                .values("subscription_id", "status").annotate(n=Count("id"))):
        out.setdefault(row["subscription_id"], {})[row["status"]] = row["n"]
    return out

