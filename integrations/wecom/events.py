"""What each WeCom callback event does (called by callbacks.callback_process inside its transaction).

Every handler is idempotent and safe out of order: WeCom does not promise the order of its pushes,
and a retried event may be processed after a newer one. Handlers re-read the current state from
WeCom (externalcontact/get, groupchat/get, get_corp_tag_list) instead of trusting the push, and a
deletion stored with a later CreateTime wins over an add or edit processed after it.

A handler returns ``(status, note)``; raising marks the event failed (retried with backoff).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.events import WecomContactAdded, emit
from core.models import User
from customers.models import Customer, Touch
from customers.services import customer_touch_contact
from integrations.wecom.models import CallbackEvent, ContactFollow, ContactWay, CorpTag, ExternalContact, TransferItem

logger = logging.getLogger(__name__)

Status = CallbackEvent.Status

# Called after commit for every client added in WeCom who is (or becomes) a customer:
# fn(customer, contact, contact_way) — contact_way None when the client did not come through one of ours;
# contact.added_userid / contact.added_at tell who was added and when. An add whose contact matched no
# customer is announced once, when the contact gets one (contact_pending_add_release).
# The SOP area and the wecom.contact_added webhook register here. One that raises does not stop the others.

CONTACT_DELETE_CHANGES = ("del_external_contact", "del_follow_user")
# WeCom errcodes meaning "this external contact / group is gone", so there is nothing to fetch any more
GONE_ERRCODES = {84061, 40096, 701008, 90500}


def _client():
    from integrations.wecom.client import wecom_client

    return wecom_client()


def _wecom_error():
    from integrations.wecom.client import WecomError

    return WecomError


def _at(event: CallbackEvent) -> datetime:
    return event.wecom_created_at or event.received_at or timezone.now()


def _staff(userid: str) -> User | None:
    return User.objects.filter(wecom_userid=userid).first() if userid else None


# --- change_external_contact --------------------------------------------------------------------

def _later_deletion(*, external_userid: str, userid: str, after: datetime) -> datetime | None:
    """When a deletion of this (contact, staff) pair that happened after ``after`` was received, its time."""
    later = (CallbackEvent.objects.filter(event="change_external_contact", change_type__in=CONTACT_DELETE_CHANGES,
                                          payload__ExternalUserID=external_userid, payload__UserID=userid,
                                          wecom_created_at__gt=after)
             .order_by("-wecom_created_at").values_list("wecom_created_at", flat=True).first())
    return later


def _follow_mark_deleted(contact: ExternalContact, userid: str, at: datetime) -> ContactFollow:
    follow, _ = ContactFollow.objects.get_or_create(contact=contact, userid=userid,
                                                    defaults={"staff": _staff(userid)})
    if follow.deleted_at is None and not (follow.added_at and follow.added_at > at):
        follow.deleted_at = at
        follow.save(update_fields=["deleted_at"])
    if contact.deleted_at is None and not contact.follows.filter(deleted_at__isnull=True).exists():
        contact.deleted_at = at
        contact.save(update_fields=["deleted_at"])
    return follow


def _contact_refresh(event: CallbackEvent, *, contact_way: ContactWay | None = None,
                     release_pending: bool = True) -> ExternalContact | None:
    """Fetch externalcontact/get and upsert; None when WeCom says the contact is gone."""
    from integrations.wecom.contacts import contact_upsert_from_wecom

    p = event.payload
    external_userid, userid = p.get("ExternalUserID") or "", p.get("UserID") or ""
    try:
        data = _client().get("externalcontact/get", params={"external_userid": external_userid})
    except _wecom_error() as exc:
        if getattr(exc, "errcode", None) in GONE_ERRCODES:
            return None
        raise
    contact = contact_upsert_from_wecom(
        data["external_contact"], data.get("follow_user") or [],
        create_if_unmatched=contact_way is not None, advisor=contact_way.advisor if contact_way else None,
        release_pending=release_pending)
    deleted_at = _later_deletion(external_userid=external_userid, userid=userid, after=_at(event))
    if deleted_at is not None:  # processed after a deletion that happened later: the deletion stands
        _follow_mark_deleted(contact, userid, deleted_at)
    return contact


def _attribute(customer: Customer, contact_way: ContactWay, *, new_prospect: bool) -> None:
    """Channel and campaign of the contact way, where the customer has none yet (a prospect created by this
    add only has the generic channel "wecom", which the contact way's channel replaces)."""
    wanted = {"channel": contact_way.channel[:50], "utm_source": contact_way.channel[:100],
              "utm_medium": "wecom_contact_way", "utm_campaign": contact_way.campaign[:100]}
    changed = [name for name, value in wanted.items()
               if value and (not getattr(customer, name) or (new_prospect and name == "channel"))]
    if changed:
        Customer.objects.filter(pk=customer.pk).update(updated_at=timezone.now(),
                                                       **{name: wanted[name] for name in changed})
        for name in changed:
            setattr(customer, name, wanted[name])


def _welcome(event: CallbackEvent, contact_way: ContactWay, customer: Customer | None, staff: User | None) -> str:
    """Send the contact way's welcome message with the event's WelcomeCode; a note when it could not be sent."""
    code = event.payload.get("WelcomeCode") or ""
    if not contact_way.welcome_message:
        return ""
    if not code:
        return "没有 WelcomeCode（可能已在企业微信后台配置了欢迎语），未发送欢迎语"
    try:
        _client().post("externalcontact/send_welcome_msg",
                       data={"welcome_code": code, "text": {"content": contact_way.welcome_message}})
    except _wecom_error() as exc:  # single-use and valid 20 s: retrying the event would not help
        return f"欢迎语发送失败：{exc}"
    if customer is not None:
        Touch.objects.create(customer=customer, channel=Touch.Channel.WECOM, direction=Touch.Direction.OUT,
                             content=contact_way.welcome_message, staff=staff, source="wecom_welcome")
    return ""


def contact_added_announce(*, customer: Customer, contact: ExternalContact, contact_way: ContactWay | None,
                           userid: str, at: datetime, change_type: str = "add_external_contact") -> None:
    """What every add of a client who is a customer does: a Touch (企业微信, 收到, source ``wecom_add``), the
    customer's last contact, and core.events.WecomContactAdded after commit (SOP journeys, the wecom.contact_added
    webhook)."""
    how = f"通过渠道活码「{contact_way.name}」" if contact_way else ""
    half = "（待投顾通过）" if change_type == "add_half_external_contact" else ""
    Touch.objects.create(customer=customer, channel=Touch.Channel.WECOM, direction=Touch.Direction.IN,
                         content=f"客户{how}添加了企业微信{half}", staff=_staff(userid), source="wecom_add", occurred_at=at)
    customer_touch_contact(customer_ids=[customer.pk], at=at)
    contact.added_userid, contact.added_at = userid, at
    emit(WecomContactAdded(customer_id=customer.pk, contact_id=contact.pk,
                           contact_way_id=contact_way.pk if contact_way else None, userid=userid, at=at))


def contact_pending_add_release(contact: ExternalContact) -> bool:
    """Announce the add that arrived while this contact matched no customer, now that it has one (linked in
    the review queue, a customer created for it, or matched by a later sync). Once: the pending add is emptied
    in the same transaction (callers hold the contact's row lock). True when announced."""
    pending = contact.pending_add or {}
    if not pending or contact.customer_id is None:
        return False
    from django.utils.dateparse import parse_datetime

    way = ContactWay.objects.filter(pk=pending.get("contact_way")).first() if pending.get("contact_way") else None
    contact_added_announce(customer=contact.customer, contact=contact, contact_way=way, userid=pending.get("userid") or "",
                           at=parse_datetime(pending.get("at") or "") or timezone.now(),
                           change_type=pending.get("change_type") or "add_external_contact")
    contact.pending_add = {}
    ExternalContact.objects.filter(pk=contact.pk).update(pending_add={})
    return True


def _contact_tags_reconcile(contact: ExternalContact) -> str:
    """Tags added or removed in WeCom on this contact reach the customer now (and ours reach WeCom). A WeCom
    error here does not fail the event (the add or edit itself stands): it is noted, and the next sync retries."""
    if not contact.customer_id or contact.match_status not in (ExternalContact.Match.MATCHED,
                                                               ExternalContact.Match.CREATED):
        return ""
    from integrations.wecom.tags_sync import contact_tags_sync

    try:
        with transaction.atomic():
            contact_tags_sync(_client(), [contact])
    except _wecom_error() as exc:
        return f"标签同步失败，下次同步重试：{exc}"
    return ""


def contact_added(event: CallbackEvent) -> tuple[str, str]:
    """add_external_contact / add_half_external_contact."""
    from tagging.models import TagSource
    from tagging.services import customer_tag_add

    p = event.payload
    state, userid = p.get("State") or "", p.get("UserID") or ""
    contact_way = ContactWay.objects.select_related("advisor").filter(state=state).first() if state else None
    had_customer = ExternalContact.objects.filter(external_userid=p.get("ExternalUserID") or "",
                                                  customer__isnull=False).exists()
    contact = _contact_refresh(event, contact_way=contact_way, release_pending=False)
    if contact is None:
        return Status.DONE, "企业微信中已无此联系人（已删除），未处理"
    customer = contact.customer
    staff = _staff(userid)
    notes = []
    if contact_way is not None:
        ContactWay.objects.filter(pk=contact_way.pk).update(added_count=F("added_count") + 1)
        if customer is not None:
            _attribute(customer, contact_way, new_prospect=not had_customer
                       and contact.match_status == ExternalContact.Match.CREATED)
            for tag in contact_way.tags.filter(active=True):
                customer_tag_add(customer=customer, tag=tag, source=TagSource.WECOM, actor="wecom",
                                 evidence=f"通过渠道活码「{contact_way.name}」添加")
    if customer is not None:
        if contact.pending_add:  # an earlier add still waiting for its customer: this one stands for it
            ExternalContact.objects.filter(pk=contact.pk).update(pending_add={})
        contact_added_announce(customer=customer, contact=contact, contact_way=contact_way, userid=userid,
                               at=_at(event), change_type=event.change_type)
        notes.append(_contact_tags_reconcile(contact))
    else:
        ExternalContact.objects.filter(pk=contact.pk).update(pending_add={
            "at": _at(event).isoformat(), "userid": userid, "change_type": event.change_type,
            "contact_way": contact_way.pk if contact_way else None})
        notes.append("未能关联到客户，已进入待人工关联")
    if contact_way is not None:
        notes.append(_welcome(event, contact_way, customer, staff))
    return Status.DONE, "；".join(n for n in notes if n)


def contact_edited(event: CallbackEvent) -> tuple[str, str]:
    """edit_external_contact: remark, description or tags changed; tags are reconciled at once."""
    contact = _contact_refresh(event)
    if contact is None:
        return Status.DONE, "企业微信中已无此联系人"
    return Status.DONE, _contact_tags_reconcile(contact)


def contact_deleted(event: CallbackEvent) -> tuple[str, str]:
    """del_external_contact (the advisor deleted the client) / del_follow_user (the client deleted the advisor).
    Works for a contact never seen before (its add may still be on its way): the deletion is kept."""
    p = event.payload
    external_userid, userid = p.get("ExternalUserID") or "", p.get("UserID") or ""
    if not external_userid or not userid:
        return Status.IGNORED, "缺少 ExternalUserID 或 UserID"
    contact, _ = ExternalContact.objects.get_or_create(external_userid=external_userid)
    contact = ExternalContact.objects.select_for_update().get(pk=contact.pk)
    at = _at(event)
    follow = _follow_mark_deleted(contact, userid, at)
    if follow.added_at and follow.added_at > at:
        return Status.DONE, "该联系人之后又被添加，删除不再生效"
    staff = _staff(userid)
    by_transfer = p.get("Source") == "DELETE_BY_TRANSFER"
    customer_id = contact.customer_id or Customer.objects.filter(
        wecom_external_userid=external_userid).values_list("pk", flat=True).first()
    if customer_id and not by_transfer:
        who = staff.display_name or staff.username if staff else userid
        if event.change_type == "del_follow_user":
            content, direction = f"客户在企业微信中删除了投顾 {who}", Touch.Direction.IN
        else:
            content, direction = f"投顾 {who} 在企业微信中删除了客户", Touch.Direction.OUT
        Touch.objects.create(customer_id=customer_id, channel=Touch.Channel.WECOM, direction=direction,
                             content=content, staff=staff, source="wecom_deleted", occurred_at=at)
    return Status.DONE, "因客户转接删除" if by_transfer else ""


def transfer_failed(event: CallbackEvent) -> tuple[str, str]:
    """transfer_fail: the client refused the takeover, or the takeover advisor is at the client limit."""
    p = event.payload
    reason = p.get("FailReason") or ""
    status = {"customer_refused": TransferItem.Status.REFUSED,
              "customer_limit_exceed": TransferItem.Status.LIMITED}.get(reason, TransferItem.Status.FAILED)
    items = (TransferItem.objects.filter(external_userid=p.get("ExternalUserID") or "",
                                         transfer__to_advisor__wecom_userid=p.get("UserID") or "",
                                         status__in=[TransferItem.Status.PENDING, TransferItem.Status.WAITING])
             .order_by("-transfer__created_at"))
    item = items.first()
    if item is None:
        return Status.IGNORED, "没有对应的等待中的转接记录"
    TransferItem.objects.filter(pk=item.pk).update(status=status, errmsg=reason[:300], updated_at=timezone.now())
    from integrations.wecom.transfers import transfer_finish_if_settled, transfer_items_revert

    reverted = transfer_items_revert(item_ids=[item.pk])
    transfer_finish_if_settled(item.transfer_id)
    return Status.DONE, "已退回原投顾" if reverted else "客户的投顾已另行变更，未退回"


# --- change_external_chat -----------------------------------------------------------------------

def _dismissed_after(chat_id: str, at: datetime) -> bool:
    return CallbackEvent.objects.filter(event="change_external_chat", change_type="dismiss", payload__ChatId=chat_id,
                                        wecom_created_at__gte=at).exists()


def chat_changed(event: CallbackEvent) -> tuple[str, str]:
    """create / update (members joined or left, owner, name, notice): re-read the group and diff it."""
    from groups.models import GroupChat
    from groups.services import group_sync_from_wecom

    chat_id = event.payload.get("ChatId") or ""
    if not chat_id:
        return Status.IGNORED, "缺少 ChatId"
    if _dismissed_after(chat_id, _at(event)):
        return Status.DONE, "该群之后已解散"
    try:
        data = _client().post("externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1})
    except _wecom_error() as exc:
        if GroupChat.objects.filter(chat_id=chat_id, status=GroupChat.Status.DISMISSED).exists():
            return Status.DONE, f"该群已解散：{exc}"
        raise
    group_sync_from_wecom(data["group_chat"], at=_at(event))
    return Status.DONE, event.payload.get("UpdateDetail") or ""


def chat_dismissed(event: CallbackEvent) -> tuple[str, str]:
    from groups.services import group_dismissed

    chat_id = event.payload.get("ChatId") or ""
    if not chat_id:
        return Status.IGNORED, "缺少 ChatId"
    group = group_dismissed(chat_id, at=_at(event))
    return Status.DONE, "" if group is not None else "本系统中还没有该群，已记录解散"


# --- change_external_tag ------------------------------------------------------------------------

def tag_changed(event: CallbackEvent) -> tuple[str, str]:
    """create / update / shuffle: re-read the tag (or group) from WeCom; delete: unlink it (tags_sync.py)."""
    from integrations.wecom.tags_sync import corp_tags_delete, corp_tags_store

    p = event.payload
    tag_id, tag_type = p.get("Id") or "", p.get("TagType") or "tag"
    if event.change_type == "delete":
        rows = CorpTag.objects.filter(group_id=tag_id) if tag_type == "tag_group" else CorpTag.objects.filter(
            wecom_tag_id=tag_id)
        corp_tags_delete(rows, at=_at(event))
        return Status.DONE, ""
    if event.change_type == "shuffle":
        body = {"group_id": [tag_id]} if tag_id else {}
    elif tag_type == "tag_group":
        body = {"group_id": [tag_id]}
    else:
        body = {"tag_id": [tag_id]}
    data = _client().post("externalcontact/get_corp_tag_list", data=body)
    counts = corp_tags_store(data.get("tag_group") or [], complete=False)
    return Status.DONE, "" if any(counts[k] for k in ("created", "updated", "unchanged", "deleted")) else "企业微信中已无此标签"


HANDLERS: dict[tuple[str, str], Callable[[CallbackEvent], tuple[str, str]]] = {
    ("change_external_contact", "add_external_contact"): contact_added,
    ("change_external_contact", "add_half_external_contact"): contact_added,
    ("change_external_contact", "edit_external_contact"): contact_edited,
    ("change_external_contact", "del_external_contact"): contact_deleted,
    ("change_external_contact", "del_follow_user"): contact_deleted,
    ("change_external_contact", "transfer_fail"): transfer_failed,
    ("change_external_chat", "create"): chat_changed,
    ("change_external_chat", "update"): chat_changed,
    ("change_external_chat", "dismiss"): chat_dismissed,
    ("change_external_tag", "create"): tag_changed,
    ("change_external_tag", "update"): tag_changed,
    ("change_external_tag", "delete"): tag_changed,
    ("change_external_tag", "shuffle"): tag_changed,
}


def event_handle(event: CallbackEvent) -> tuple[str, str]:
    handler = HANDLERS.get((event.event, event.change_type))
    if handler is None:
        return Status.IGNORED, f"未处理的事件类型：{event.event}/{event.change_type or '-'}"
    return handler(event)
