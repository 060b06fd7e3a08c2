"""External contacts: upsert from WeCom's shapes, link to customers, and the review queue's actions.

Matching, in this order, for a contact not yet matched (``match_status`` unmatched):

1. a customer whose ``wecom_external_userid`` is the contact's external_userid → method ``external_userid``;
2. the same ``unionid`` on another contact already linked to a customer → ``unionid``;
3. a mobile in a follow's ``remark_mobiles`` (or an 11-digit mobile in its remark) equal to a customer's
   mobile, found through the blind index ``Customer.mobile_hash`` → ``mobile``; several customers with
   that mobile and no way to tell which → not matched;
4. otherwise ``unmatched`` (the review queue), or with ``create_if_unmatched`` a new prospect customer
   (``created``).

A match sets ``Customer.wecom_external_userid`` when the customer has none. Contacts linked by hand
(``manual``), created, or ignored are never re-matched automatically.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.crypto import blind_index, encrypt, mask_mobile
from core.errors import ApplicationError
from core.models import User
from core.services import audit_record
from core.validators import MOBILE_RE, normalize_mobile
from customers.models import Customer, FunnelStage
from integrations.wecom.models import ContactFollow, ExternalContact

Match = ExternalContact.Match
MOBILE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
PROSPECT_PREFIX = "wx:"


def _ts(value) -> datetime | None:
    try:
        seconds = int(value or 0)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else None


def _tag_ids(follow: dict) -> list[str]:
    """follow_user (externalcontact/get) has ``tags: [{tag_id…}]``; follow_info (batch) has ``tag_id: [...]``."""
    if "tag_id" in follow:
        return sorted(str(t) for t in follow.get("tag_id") or [])
    return sorted(str(t.get("tag_id")) for t in follow.get("tags") or [] if t.get("tag_id") and int(t.get("type", 1)) == 1)


def follow_mobiles(follows) -> list[str]:
    """Every mainland mobile in the follows' remark_mobiles and remarks (normalised, deduplicated)."""
    found: list[str] = []
    for follow in follows:
        mobiles = follow.remark_mobiles if isinstance(follow, ContactFollow) else follow.get("remark_mobiles") or []
        remark = follow.remark if isinstance(follow, ContactFollow) else follow.get("remark") or ""
        for value in [*mobiles, *MOBILE_IN_TEXT.findall(remark)]:
            mobile = normalize_mobile(str(value))
            if MOBILE_RE.match(mobile) and mobile not in found:
                found.append(mobile)
    return found


def _set_if_changed(obj, values: dict) -> bool:
    changed = [k for k, v in values.items() if getattr(obj, k) != v]
    for k in changed:
        setattr(obj, k, values[k])
    return bool(changed)


def _follows_upsert(contact: ExternalContact, follow_user: list[dict], staff_by_userid: dict[str, User | None]) -> int:
    changes = 0
    existing = {f.userid: f for f in contact.follows.all()}
    for follow in follow_user:
        userid = str(follow.get("userid") or "")
        if not userid:
            continue
        if userid not in staff_by_userid:
            staff_by_userid[userid] = User.objects.filter(wecom_userid=userid).first()
        values = {
            "staff": staff_by_userid[userid], "remark": str(follow.get("remark") or "")[:100],
            "description": str(follow.get("description") or "")[:300],
            "remark_mobiles": [str(m) for m in follow.get("remark_mobiles") or []],
            "add_way": int(follow.get("add_way") or 0), "state": str(follow.get("state") or "")[:30],
            "wecom_tag_ids": _tag_ids(follow), "added_at": _ts(follow.get("createtime")), "deleted_at": None,
        }
        row = existing.get(userid)
        if row is None:
            ContactFollow.objects.create(contact=contact, userid=userid, **values)
            changes += 1
        elif _set_if_changed(row, values):
            row.save()
            changes += 1
    return changes


def customer_match(contact: ExternalContact) -> tuple[Customer | None, str]:
    """(customer, method) by the rules in the module docstring, or (None, "")."""
    customer = Customer.objects.filter(wecom_external_userid=contact.external_userid).first()
    if customer is not None:
        return customer, "external_userid"
    if contact.unionid:
        other = (ExternalContact.objects.filter(unionid=contact.unionid, customer__isnull=False)
                 .exclude(pk=contact.pk).select_related("customer").order_by("pk").first())
        if other is not None:
            return other.customer, "unionid"
    follows = list(contact.follows.filter(deleted_at=None))
    hashes = [blind_index(m) for m in follow_mobiles(follows)]
    if hashes:
        candidates = list(Customer.objects.filter(mobile_hash__in=hashes).order_by("pk")[:10])
        if len(candidates) > 1:  # the same mobile on several customers: prefer the one a follower serves
            staff_ids = {f.staff_id for f in follows if f.staff_id}
            candidates = [c for c in candidates if c.advisor_id in staff_ids]
        if len(candidates) == 1:
            return candidates[0], "mobile"
    return None, ""


def _customer_claim_wecom_id(customer: Customer, external_userid: str) -> None:
    """Give the customer this external_userid if it has none and nobody else holds it."""
    if customer.wecom_external_userid:
        return
    if Customer.objects.filter(wecom_external_userid=external_userid).exists():
        return
    Customer.objects.filter(pk=customer.pk, wecom_external_userid=None).update(
        wecom_external_userid=external_userid, updated_at=timezone.now())
    customer.wecom_external_userid = external_userid


def _prospect_create(contact: ExternalContact, *, advisor: User | None) -> Customer:
    follows = list(contact.follows.filter(deleted_at=None).select_related("staff"))
    if advisor is None:
        advisor = next((f.staff for f in follows if f.staff and f.staff.branch_id), None)
    if advisor is None or not advisor.branch_id:
        raise ApplicationError("wecom_no_advisor", _("无法新建客户：添加该联系人的员工不是本系统中有营业部的投顾"))
    remark = next((f.remark for f in follows if f.userid == advisor.wecom_userid and f.remark), "")
    mobiles = follow_mobiles(follows)
    mobile = mobiles[0] if mobiles and not Customer.objects.filter(mobile_hash=blind_index(mobiles[0])).exists() else ""
    external_id = f"{PROSPECT_PREFIX}{contact.external_userid}"[:64]
    customer = Customer.objects.filter(external_id=external_id).first()
    if customer is not None:
        return customer
    taken = Customer.objects.filter(wecom_external_userid=contact.external_userid).exists()
    customer = Customer.objects.create(
        external_id=external_id, name=(remark or contact.name or _("企业微信客户"))[:50],
        gender={1: "M", 2: "F"}.get(contact.gender, "U"), branch_id=advisor.branch_id, advisor=advisor,
        channel="wecom", funnel_stage=FunnelStage.ID_UPLOADED,
        wecom_external_userid=None if taken else contact.external_userid,
        mobile_encrypted=encrypt(mobile) if mobile else "", mobile_hash=blind_index(mobile) if mobile else "",
        mobile_masked=mask_mobile(mobile) if mobile else "",
    )
    from customers import bulk

    created_id = customer.pk
    for hook in bulk.CUSTOMERS_CHANGED_HOOKS:  # customer.created webhooks, like every other way in
        transaction.on_commit(lambda hook=hook: hook([created_id], []), robust=True)
    return customer


@transaction.atomic
def contact_upsert_from_wecom(external_contact: dict, follow_user: list[dict], *, create_if_unmatched: bool = False,
                              advisor: User | None = None, staff_cache: dict | None = None) -> ExternalContact:
    """Write one contact (``external_contact`` of externalcontact/get or batch/get_by_user) and its
    follows (``follow_user`` / ``[follow_info]``; follows not listed are left alone), then link it.
    ``contact._sync_changed`` tells whether anything was written."""
    external_userid = str(external_contact["external_userid"])
    values = {
        "name": str(external_contact.get("name") or "")[:100], "type": int(external_contact.get("type") or 1),
        "unionid": str(external_contact.get("unionid") or "")[:64], "gender": int(external_contact.get("gender") or 0),
        "corp_name": str(external_contact.get("corp_name") or "")[:100], "deleted_at": None,
    }
    contact = ExternalContact.objects.select_for_update().filter(external_userid=external_userid).first()
    changed = False
    if contact is None:
        try:
            with transaction.atomic():
                contact = ExternalContact.objects.create(external_userid=external_userid, **values)
        except IntegrityError:  # created meanwhile by a callback
            contact = ExternalContact.objects.select_for_update().get(external_userid=external_userid)
        else:
            changed = True
    if _set_if_changed(contact, values):
        changed = True
    changed = bool(_follows_upsert(contact, follow_user, staff_cache if staff_cache is not None else {})) or changed

    if contact.match_status == Match.UNMATCHED:
        customer, method = customer_match(contact)
        if customer is not None:
            contact.customer, contact.match_status, contact.match_method = customer, Match.MATCHED, method
            changed = True
        elif create_if_unmatched:
            contact.customer = _prospect_create(contact, advisor=advisor)
            contact.match_status, contact.match_method = Match.CREATED, "created"
            changed = True
    if contact.customer_id and contact.match_status in (Match.MATCHED, Match.CREATED):
        _customer_claim_wecom_id(contact.customer, external_userid)
    if changed:
        contact.updated_at = timezone.now()
        contact.save()
    contact._sync_changed = changed
    return contact


def contacts_rematch_by_unionid() -> int:
    """Link unmatched contacts whose unionid a linked contact has (a page may list the new external_userid
    of a person before the one we can link); returns how many were linked."""
    linked = (ExternalContact.objects.filter(customer__isnull=False).exclude(unionid="")
              .values_list("unionid", flat=True))
    linked_count = 0
    for contact_id in (ExternalContact.objects.filter(match_status=Match.UNMATCHED, unionid__in=linked)
                       .values_list("pk", flat=True)):
        with transaction.atomic():
            contact = ExternalContact.objects.select_for_update().get(pk=contact_id)
            customer, method = customer_match(contact)
            if customer is None or contact.match_status != Match.UNMATCHED:
                continue
            contact.customer, contact.match_status, contact.match_method = customer, Match.MATCHED, method
            contact.updated_at = timezone.now()
            contact.save(update_fields=["customer", "match_status", "match_method", "updated_at"])
            _customer_claim_wecom_id(customer, contact.external_userid)
            linked_count += 1
    return linked_count


# --- the review queue ----------------------------------------------------------------------------

def review_queue():
    return (ExternalContact.objects.filter(match_status=Match.UNMATCHED, deleted_at=None)
            .prefetch_related("follows__staff").order_by("-updated_at", "-pk"))


def review_customer_find(query: str) -> Customer | None:
    """A customer by exact customer number (客户号) or exact mobile (through the blind index)."""
    query = (query or "").strip()
    if not query:
        return None
    mobile = normalize_mobile(query)
    conditions = Q(external_id=query)
    if MOBILE_RE.match(mobile):
        conditions |= Q(mobile_hash=blind_index(mobile))
    matches = list(Customer.objects.filter(conditions).order_by("pk")[:2])
    return matches[0] if len(matches) == 1 else None


def _review_contact(contact_id: int) -> ExternalContact:
    contact = ExternalContact.objects.select_for_update().filter(pk=contact_id).first()
    if contact is None:
        raise ApplicationError("wecom_contact_missing", _("外部联系人不存在"), status_code=404)
    if contact.match_status != Match.UNMATCHED:
        raise ApplicationError("wecom_contact_resolved", _("该联系人已处理（%(status)s）") % {
            "status": contact.get_match_status_display()})
    return contact


@transaction.atomic
def contact_link(*, actor, contact_id: int, customer_query: str) -> ExternalContact:
    contact = _review_contact(contact_id)
    customer = review_customer_find(customer_query)
    if customer is None:
        raise ApplicationError("wecom_customer_not_found", _("没有找到唯一的客户：请输入准确的客户号或手机号"),
                               [{"field": "customer", "message": _("没有找到唯一的客户")}])
    contact.customer, contact.match_status, contact.match_method = customer, Match.MATCHED, "manual"
    contact.updated_at = timezone.now()
    contact.save(update_fields=["customer", "match_status", "match_method", "updated_at"])
    _customer_claim_wecom_id(customer, contact.external_userid)
    audit_record(actor=actor, action="wecom.contact_link", target_type="wecom.externalcontact",
                 target_id=contact.external_userid, details={"customer": customer.external_id})
    return contact


@transaction.atomic
def contact_customer_create(*, actor, contact_id: int) -> ExternalContact:
    contact = _review_contact(contact_id)
    customer = _prospect_create(contact, advisor=None)
    contact.customer, contact.match_status, contact.match_method = customer, Match.CREATED, "created"
    contact.updated_at = timezone.now()
    contact.save(update_fields=["customer", "match_status", "match_method", "updated_at"])
    audit_record(actor=actor, action="wecom.contact_create_customer", target_type="wecom.externalcontact",
                 target_id=contact.external_userid, details={"customer": customer.external_id})
    return contact


@transaction.atomic
def contact_ignore(*, actor, contact_id: int) -> ExternalContact:
    contact = _review_contact(contact_id)
    contact.match_status, contact.match_method = Match.IGNORED, "manual"
    contact.updated_at = timezone.now()
    contact.save(update_fields=["match_status", "match_method", "updated_at"])
    audit_record(actor=actor, action="wecom.contact_ignore", target_type="wecom.externalcontact",
                 target_id=contact.external_userid)
    return contact
