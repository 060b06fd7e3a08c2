"""Contact ways (渠道活码): a contact QR per channel/campaign/advisor, created through WeCom's
externalcontact/add_contact_way (type 1 single advisor, scene 2 QR code) with a ``state`` of ours.

WeCom returns the ``state`` in the add_external_contact callback and in follow_info, which is how
events.contact_added attributes a new client to the channel, tags them and sends the welcome message.
"""

from __future__ import annotations

import enum
import secrets

import requests
from django.db import transaction

from core.access import may
from core.errors import ApplicationError
from core.models import User
from core.services import audit_record
from integrations.wecom.models import ContactWay

STATE_PREFIX = "cw"
WELCOME_MAX_CHARS = 1000  # WeCom takes up to 4000 bytes of text; 1000 Chinese characters fit
# WeCom errcodes that are about the advisor (not in the app's visible range, no customer-contact permission …)
ADVISOR_ERRCODES = {60111, 40098, 41054, 84074, 84075, 41053}


class ContactWayError(enum.StrEnum):
    ADVISOR_NOT_BOUND = "wecom_contact_way_advisor_not_bound"
    WECOM_FAILED = "wecom_contact_way_wecom_failed"
    WECOM_UNREACHABLE = "wecom_unreachable"


def contact_way_state_new() -> str:
    """A fresh ``state`` (≤ 30 characters, unique among our contact ways)."""
    while True:
        state = f"{STATE_PREFIX}{secrets.token_hex(10)}"
        if not ContactWay.objects.filter(state=state).exists():
            return state


def _wecom_call(path: str, data: dict, *, field_for_errcodes: dict | None = None) -> dict:
    """POST to WeCom; its error becomes an ApplicationError naming the field it is about (if any)."""
    from integrations.wecom.client import WecomError, wecom_client

    try:
        return wecom_client().post(path, data=data)
    except WecomError as exc:
        errcode = getattr(exc, "errcode", None)
        fields = [{"field": field} for codes, field in (field_for_errcodes or {}).items() if errcode in codes]
        raise ApplicationError(ContactWayError.WECOM_FAILED, exc.message, fields, status_code=502) from exc
    except requests.RequestException as exc:
        raise ApplicationError(ContactWayError.WECOM_UNREACHABLE, f"无法连接企业微信：{type(exc).__name__}",
                               status_code=502) from exc


def contact_way_create(*, actor: User, name: str, channel: str, campaign: str, advisor: User, tags,
                       welcome_message: str) -> ContactWay:
    """Create the QR in WeCom and the row here together: if WeCom refuses, nothing is stored."""
    if not advisor.wecom_userid:
        raise ApplicationError(ContactWayError.ADVISOR_NOT_BOUND, "该投顾未绑定企业微信账号，无法生成活码",
                               [{"field": "advisor"}])
    with transaction.atomic():
        way = ContactWay.objects.create(
            name=name.strip(), channel=channel.strip(), campaign=(campaign or "").strip(), advisor=advisor,
            branch=advisor.branch, welcome_message=(welcome_message or "").strip(), state=contact_way_state_new(),
            created_by=actor)
        way.tags.set(tags)
        answer = _wecom_call("externalcontact/add_contact_way",
                             {"type": 1, "scene": 2, "remark": way.name[:30], "skip_verify": True, "state": way.state,
                              "user": [advisor.wecom_userid]},
                             field_for_errcodes={frozenset(ADVISOR_ERRCODES): "advisor"})
        way.config_id, way.qr_code = str(answer.get("config_id") or ""), str(answer.get("qr_code") or "")
        way.save(update_fields=["config_id", "qr_code"])
        audit_record(actor=actor, action="wecom.contact_way_create", target_type="contact_way", target_id=way.pk,
                     details={"name": way.name, "channel": way.channel, "campaign": way.campaign,
                              "advisor": advisor.username, "state": way.state, "config_id": way.config_id,
                              "tags": sorted(t.code for t in way.tags.all())})
    return way


def contact_way_deactivate(*, actor: User, contact_way: ContactWay) -> ContactWay:
    """Delete the QR in WeCom (it stops working) and mark ours inactive; attribution of past adds stays."""
    with transaction.atomic():
        way = ContactWay.objects.select_for_update().get(pk=contact_way.pk)
        if not way.active:
            return way
        if way.config_id:
            _wecom_call("externalcontact/del_contact_way", {"config_id": way.config_id})
        way.active = False
        way.save(update_fields=["active"])
        audit_record(actor=actor, action="wecom.contact_way_deactivate", target_type="contact_way", target_id=way.pk,
                     details={"name": way.name, "config_id": way.config_id})
    return way


def contact_ways_for(user: User):
    """The contact ways a user may manage: operators and admins see all (they are firm-wide); others none."""
    if not may(user, "contact_ways"):
        return ContactWay.objects.none()
    return ContactWay.objects.select_related("advisor", "branch").prefetch_related("tags")
