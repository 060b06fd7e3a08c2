"""WeCom callbacks (回调): verifying and decrypting what WeCom sends, storing it, and claiming it for processing.

WeCom signs every callback with ``msg_signature = sha1(sort(token, timestamp, nonce, encrypt))`` and
encrypts the payload with the EncodingAESKey (AES-256-CBC, the corp id appended to the plaintext).
wechatpy's ``WeChatCrypto`` does both checks; anything that fails them is refused and nothing is stored.

The view stores the decrypted event (:func:`callback_receive`) and answers at once; processing runs in
Celery (:func:`callback_process`). WeCom retries an event it got no answer for with the same content,
so events are deduplicated on the SHA-256 of the decrypted XML. Each processing attempt claims the row
with ``SELECT … FOR UPDATE SKIP LOCKED`` at a known attempt count, so a task delivered twice does the
work once; :func:`callbacks_due` finds pending events whose task was lost and failed ones due a retry.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import xmltodict
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from wechatpy.enterprise.crypto import WeChatCrypto

from integrations.wecom.client import wecom_time
from integrations.wecom.models import CallbackEvent

logger = logging.getLogger(__name__)

Status = CallbackEvent.Status

MAX_BODY_BYTES = 64 * 1024  # WeCom's event callbacks are a few KB; anything bigger is not one
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a signed request older or newer than this is a replay (or a wrong clock)
MAX_ATTEMPTS = 6
RETRY_BASE = timedelta(minutes=1)  # failed attempt n is retried after RETRY_BASE × 2^(n-1)
LOST_TASK_AFTER = timedelta(minutes=2)  # a pending event older than this has lost its task
DUE_BATCH = 500


class CallbackRejected(Exception):
    """The request is not a genuine callback of our corp (signature, encryption, corp id, parameters)."""


def _crypto() -> WeChatCrypto:
    token, aes_key, corp_id = (settings.WECOM_CALLBACK_TOKEN, settings.WECOM_CALLBACK_AES_KEY,
                               settings.WECOM_CORP_ID)
    if not (token and aes_key and corp_id):
        raise CallbackRejected("WECOM_CALLBACK_TOKEN / WECOM_CALLBACK_AES_KEY / WECOM_CORP_ID are not set")
    try:
        return WeChatCrypto(token, aes_key, corp_id)
    except Exception as exc:  # noqa: BLE001 - a malformed AES key in the environment
        raise CallbackRejected(f"WECOM_CALLBACK_AES_KEY is not a valid EncodingAESKey: {exc}") from exc


def _required(**params) -> None:
    missing = [name for name, value in params.items() if not value]
    if missing:
        raise CallbackRejected(f"missing parameters: {', '.join(missing)}")


def callback_precheck(*, timestamp: str, size: int, now: datetime | None = None) -> None:
    """What is refused before any signature check or XML parsing: a body over MAX_BODY_BYTES and a timestamp
    more than MAX_CLOCK_SKEW from our clock (WeCom signs the timestamp, so an old request cannot be replayed)."""
    if size > MAX_BODY_BYTES:
        raise CallbackRejected(f"body of {size} bytes is over the {MAX_BODY_BYTES} byte cap")
    try:
        sent = datetime.fromtimestamp(int(timestamp), tz=timezone.get_current_timezone())
    except (TypeError, ValueError, OverflowError, OSError):
        raise CallbackRejected("timestamp is not a Unix time") from None
    if abs((now or timezone.now()) - sent) > MAX_CLOCK_SKEW:
        raise CallbackRejected(f"timestamp {timestamp} is more than 5 minutes off")


def callback_verify_url(*, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
    """The GET WeCom sends when the callback URL is saved: check the signature, answer the decrypted echostr."""
    _required(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, echostr=echostr)
    callback_precheck(timestamp=timestamp, size=len(echostr))
    crypto = _crypto()
    try:
        return crypto.check_signature(msg_signature, timestamp, nonce, echostr)
    except Exception as exc:  # noqa: BLE001 - bad signature, bad base64/padding, wrong corp id: all "not WeCom"
        raise CallbackRejected(f"echostr rejected: {type(exc).__name__}") from exc


def callback_decrypt(*, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The decrypted XML of a POSTed callback, or :class:`CallbackRejected`."""
    _required(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, body=body)
    callback_precheck(timestamp=timestamp, size=len(body))
    crypto = _crypto()
    try:
        return crypto.decrypt_message(body, msg_signature, timestamp, nonce)
    except Exception as exc:  # noqa: BLE001 - bad signature, not XML, bad AES payload, wrong corp id
        raise CallbackRejected(f"message rejected: {type(exc).__name__}") from exc


def callback_parse(xml: str) -> dict:
    """The event's fields as a flat dict of strings (nested elements such as MemChangeList stay dicts)."""
    try:
        document = xmltodict.parse(xml, disable_entities=True)
    except Exception as exc:  # noqa: BLE001 - decrypted, but not XML
        raise CallbackRejected(f"decrypted payload is not XML: {type(exc).__name__}") from exc
    payload = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(payload, dict) or not payload.get("Event"):
        raise CallbackRejected("decrypted payload is not a WeCom event")
    return payload


def _created_at(payload: dict) -> datetime | None:
    return wecom_time(payload.get("CreateTime"))


def callback_receive(*, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> tuple[CallbackEvent, bool]:
    """Verify, decrypt and store one POSTed callback; (event, created). A repeat of an event already
    stored (WeCom's retry) returns the stored row with created False and queues nothing."""
    xml = callback_decrypt(body=body, msg_signature=msg_signature, timestamp=timestamp, nonce=nonce)
    payload = callback_parse(xml)
    key = hashlib.sha256(xml.encode()).hexdigest()
    with transaction.atomic():
        event, created = CallbackEvent.objects.get_or_create(
            dedupe_key=key,
            defaults={"event": str(payload.get("Event"))[:50], "change_type": str(payload.get("ChangeType") or "")[:50],
                      "payload": payload, "wecom_created_at": _created_at(payload)},
        )
        if created:
            from integrations.wecom.tasks_ops import callback_process_task

            transaction.on_commit(lambda: callback_process_task.delay(event.pk, 0))
    return event, created


# --- processing -------------------------------------------------------------------------------

def callback_process(event_id: int, expected_attempts: int | None = None) -> str | None:
    """One processing attempt of one event; the new status, or None when there was nothing to do
    (already processed, being processed, or this attempt was made by someone else)."""
    from integrations.wecom.events import event_handle

    with transaction.atomic():
        rows = CallbackEvent.objects.select_for_update(skip_locked=True).filter(
            pk=event_id, status__in=[Status.PENDING, Status.FAILED])
        if expected_attempts is not None:
            rows = rows.filter(attempts=expected_attempts)
        event = rows.first()
        if event is None:
            return None
        event.attempts += 1
        try:
            with transaction.atomic():
                status, note = event_handle(event)
        except Exception as exc:  # noqa: BLE001 - recorded on the event and retried with backoff
            logger.warning("WeCom callback %s failed (attempt %s)", event.pk, event.attempts, exc_info=True)
            status, note = Status.FAILED, f"{type(exc).__name__}: {exc}"
        event.status, event.error, event.processed_at = status, (note or "")[:4000], timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
    return status


def callback_retry_delay(attempts: int) -> timedelta:
    return RETRY_BASE * (2 ** max(0, attempts - 1))


def callbacks_due(now: datetime | None = None) -> list[tuple[int, int]]:
    """(event id, attempts) of pending events whose task was lost and failed ones due another try."""
    now = now or timezone.now()
    due = Q(status=Status.PENDING, received_at__lte=now - LOST_TASK_AFTER)
    for attempts in range(1, MAX_ATTEMPTS):
        due |= Q(status=Status.FAILED, attempts=attempts, processed_at__lte=now - callback_retry_delay(attempts))
    return list(CallbackEvent.objects.filter(due).order_by("received_at", "pk")
                .values_list("pk", "attempts")[:DUE_BATCH])
