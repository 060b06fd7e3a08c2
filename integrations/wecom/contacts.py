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
from collections import defaultdict

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.crypto import blind_index, encrypt, mask_mobile
from core.errors import ApplicationError
from core.events import CustomersChanged, emit
from core.models import User
from core.services import audit_record
from core.validators import MOBILE_RE, normalize_mobile
from customers.models import Customer, FunnelStage
from integrations.wecom.client import wecom_time
from integrations.wecom.models import ContactFollow, ExternalContact

Match = ExternalContact.Match
MOBILE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
PROSPECT_PREFIX = "wx:"
CONTACT_FIELDS = ["name", "type", "unionid", "gender", "corp_name", "deleted_at", "customer", "match_status",
                  "match_method", "updated_at"]
FOLLOW_FIELDS = ["staff", "remark", "description", "remark_mobiles", "add_way", "state", "wecom_tag_ids", "added_at",
                 "deleted_at"]


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


def _contact_values(external_contact: dict) -> dict:
    return {
        "name": str(external_contact.get("name") or "")[:100], "type": int(external_contact.get("type") or 1),
        "unionid": str(external_contact.get("unionid") or "")[:64], "gender": int(external_contact.get("gender") or 0),
        "corp_name": str(external_contact.get("corp_name") or "")[:100], "deleted_at": None,
    }


def _follow_values(follow: dict, staff: User | None) -> dict:
    return {
        "staff_id": staff.pk if staff else None, "remark": str(follow.get("remark") or "")[:100],
        "description": str(follow.get("description") or "")[:300],
        "remark_mobiles": [str(m) for m in follow.get("remark_mobiles") or []],
        "add_way": int(follow.get("add_way") or 0), "state": str(follow.get("state") or "")[:30],
        "wecom_tag_ids": _tag_ids(follow), "added_at": wecom_time(follow.get("createtime")), "deleted_at": None,
    }


def _staff_load(userids: set[str], staff_by_userid: dict[str, User | None]) -> None:
    """Fill ``staff_by_userid`` (a cache kept across pages) for the userids it lacks, in one query."""
    missing = {u for u in userids if u not in staff_by_userid}
    if missing:
        found = {u.wecom_userid: u for u in User.objects.filter(wecom_userid__in=missing)}
        staff_by_userid.update({u: found.get(u) for u in missing})


class _Matcher:
    """``customer_match`` for many contacts at once: what it reads (customers by external_userid, linked
    contacts by unionid, customers by mobile hash) is loaded once, and kept current as contacts get linked."""

    def __init__(self, contacts: list[ExternalContact], live_follows):
        self.live_follows = live_follows  # contact → its follows not deleted
        self.by_external_userid = {c.wecom_external_userid: c for c in Customer.objects.filter(
            wecom_external_userid__in=[c.external_userid for c in contacts])}
        self.by_unionid: dict[str, list[tuple[int, Customer]]] = defaultdict(list)
        unionids = {c.unionid for c in contacts if c.unionid}
        if unionids:
            for other in (ExternalContact.objects.filter(unionid__in=unionids, customer__isnull=False)
                          .select_related("customer").order_by("pk")):
                self.by_unionid[other.unionid].append((other.pk, other.customer))
        self.by_mobile_hash: dict[str, list[Customer]] = defaultdict(list)
        hashes = {blind_index(m) for c in contacts for m in follow_mobiles(live_follows(c))}
        if hashes:
            for customer in Customer.objects.filter(mobile_hash__in=hashes).order_by("pk"):
                self.by_mobile_hash[customer.mobile_hash].append(customer)

    def match(self, contact: ExternalContact) -> tuple[Customer | None, str]:
        customer = self.by_external_userid.get(contact.external_userid)
        if customer is not None:
            return customer, "external_userid"
        other = next((c for pk, c in self.by_unionid.get(contact.unionid, []) if pk != contact.pk), None)
        if other is not None:
            return other, "unionid"
        follows = self.live_follows(contact)
        found = {c.pk: c for m in follow_mobiles(follows) for c in self.by_mobile_hash.get(blind_index(m), [])}
        candidates = [found[pk] for pk in sorted(found)][:10]
        if len(candidates) > 1:  # the same mobile on several customers: prefer the one a follower serves
            staff_ids = {f.staff_id for f in follows if f.staff_id}
            candidates = [c for c in candidates if c.advisor_id in staff_ids]
        if len(candidates) == 1:
            return candidates[0], "mobile"
        return None, ""

    def link(self, contact: ExternalContact, customer: Customer, status: str, method: str) -> None:
        """Link the contact; the contacts matched after it see its unionid linked."""
        contact.customer, contact.match_status, contact.match_method = customer, status, method
        if contact.unionid:
            rows = self.by_unionid[contact.unionid]
            rows.append((contact.pk, customer))
            rows.sort(key=lambda row: row[0])


def _live_follows_in_db(contact: ExternalContact) -> list[ContactFollow]:
    return list(contact.follows.filter(deleted_at=None))


def customer_match(contact: ExternalContact) -> tuple[Customer | None, str]:
    """(customer, method) by the rules in the module docstring, or (None, "")."""
    return _Matcher([contact], _live_follows_in_db).match(contact)


def _customer_claim_wecom_id(customer: Customer, external_userid: str,
                             holders: dict[str, Customer] | None = None) -> None:
    """Give the customer this external_userid if it has none and nobody else holds it. ``holders`` (the
    customers known to hold an external_userid, kept current here) replaces the look-up when given."""
    if customer.wecom_external_userid:
        return
    if (external_userid in holders if holders is not None
            else Customer.objects.filter(wecom_external_userid=external_userid).exists()):
        return
    Customer.objects.filter(pk=customer.pk, wecom_external_userid=None).update(
        wecom_external_userid=external_userid, updated_at=timezone.now())
    customer.wecom_external_userid = external_userid
    if holders is not None:
        holders[external_userid] = customer


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
    emit(CustomersChanged(created_ids=(customer.pk,)))  # customer.created webhooks, like every other way in
    return customer


def _contacts_lock(values_by_external_userid: dict[str, dict]) -> tuple[dict[str, ExternalContact], set[str]]:
    """The contacts of these external_userids, locked, with their customer; the ones missing are created
    (one INSERT; a callback may create one meanwhile, which is then just locked). Also returns the created."""
    rows = ExternalContact.objects.select_for_update(of=("self",)).select_related("customer")
    contacts = {c.external_userid: c for c in rows.filter(external_userid__in=list(values_by_external_userid))}
    missing = [eid for eid in values_by_external_userid if eid not in contacts]
    if missing:
        ExternalContact.objects.bulk_create(
            [ExternalContact(external_userid=eid, **values_by_external_userid[eid]) for eid in missing],
            ignore_conflicts=True)
        contacts.update({c.external_userid: c for c in rows.filter(external_userid__in=missing)})
    return contacts, set(missing)


@transaction.atomic
def contacts_upsert_from_wecom(items: list[tuple[dict, list[dict]]], *, create_if_unmatched: bool = False,
                               advisor: User | None = None, staff_cache: dict | None = None,
                               release_pending: bool = True) -> list[tuple[ExternalContact, bool]]:
    """Write a page of contacts and link them: ``items`` are ``(external_contact, follow_user)`` as in
    externalcontact/get (``follow_user``) or batch/get_by_user (``[follow_info]``; a contact may come once
    per follower). Follows not listed are left alone. Returns ``(contact, changed)`` per item, ``changed``
    telling whether the item wrote anything (a contact's own changes count on its first item).

    A fixed number of queries per page: contacts, follows, staff and what matching needs are read once
    each, and written in bulk; only new prospects and customers getting an external_userid cost more.
    A contact linked here that has an add waiting for its customer gets it announced (``release_pending``)."""
    staff_by_userid = staff_cache if staff_cache is not None else {}
    values = {str(external["external_userid"]): _contact_values(external) for external, _follows in items}
    contacts, created = _contacts_lock(values)
    changed_contacts = {eid for eid in values if _set_if_changed(contacts[eid], values[eid])} | created

    follows: dict[int, dict[str, ContactFollow]] = defaultdict(dict)
    for follow in ContactFollow.objects.filter(contact__in=list(contacts.values())):
        follows[follow.contact_id][follow.userid] = follow
    _staff_load({str(f.get("userid") or "") for _e, fs in items for f in fs} - {""}, staff_by_userid)
    new_follows: list[ContactFollow] = []
    changed_follows: dict[int, ContactFollow] = {}
    changed_items: list[bool] = []
    for external, follow_user in items:
        contact = contacts[str(external["external_userid"])]
        item_changed = False
        for data in follow_user:
            userid = str(data.get("userid") or "")
            if not userid:
                continue
            follow_values = _follow_values(data, staff_by_userid[userid])
            row = follows[contact.pk].get(userid)
            if row is None:
                row = follows[contact.pk][userid] = ContactFollow(contact=contact, userid=userid, **follow_values)
                new_follows.append(row)
                item_changed = True
            elif _set_if_changed(row, follow_values):
                if row.pk:
                    changed_follows[row.pk] = row
                item_changed = True
        changed_items.append(item_changed)
    ContactFollow.objects.bulk_create(new_follows)
    ContactFollow.objects.bulk_update(changed_follows.values(), FOLLOW_FIELDS)

    def live_follows(contact):
        return [f for f in follows[contact.pk].values() if f.deleted_at is None]

    page = list({c.pk: c for c in (contacts[str(e["external_userid"])] for e, _f in items)}.values())
    unmatched = [c for c in page if c.match_status == Match.UNMATCHED]
    matcher = _Matcher(unmatched, live_follows) if unmatched else None
    for contact in unmatched:
        customer, method = matcher.match(contact)
        if customer is not None:
            matcher.link(contact, customer, Match.MATCHED, method)
        elif create_if_unmatched:
            matcher.link(contact, _prospect_create(contact, advisor=advisor), Match.CREATED, "created")
        else:
            continue
        changed_contacts.add(contact.external_userid)
    holders = matcher.by_external_userid if matcher else None
    for contact in page:
        if contact.customer_id and contact.match_status in (Match.MATCHED, Match.CREATED):
            _customer_claim_wecom_id(contact.customer, contact.external_userid, holders)

    now = timezone.now()
    to_save = [c for c in page if c.external_userid in changed_contacts]
    for contact in to_save:
        contact.updated_at = now
    ExternalContact.objects.bulk_update(to_save, CONTACT_FIELDS)
    if release_pending:
        _pending_adds_release([c for c in unmatched if c.customer_id and c.pending_add])
    result, first_seen = [], set()
    for (external, _follows), item_changed in zip(items, changed_items, strict=True):
        contact = contacts[str(external["external_userid"])]
        own = contact.external_userid in changed_contacts and contact.external_userid not in first_seen
        first_seen.add(contact.external_userid)
        result.append((contact, item_changed or own))
    return result


def contact_upsert_from_wecom(external_contact: dict, follow_user: list[dict], *, create_if_unmatched: bool = False,
                              advisor: User | None = None, staff_cache: dict | None = None,
                              release_pending: bool = True) -> ExternalContact:
    """Write one contact (``external_contact`` of externalcontact/get or batch/get_by_user) and its
    follows (``follow_user`` / ``[follow_info]``; follows not listed are left alone), then link it.
    ``contact._sync_changed`` tells whether anything was written."""
    [(contact, changed)] = contacts_upsert_from_wecom([(external_contact, follow_user)],
                                                      create_if_unmatched=create_if_unmatched, advisor=advisor,
                                                      staff_cache=staff_cache, release_pending=release_pending)
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
            _pending_adds_release([contact])
            linked_count += 1
    return linked_count


def _pending_adds_release(contacts: list[ExternalContact]) -> None:
    from integrations.wecom.events import contact_pending_add_release

    for contact in contacts:
        contact_pending_add_release(contact)


# --- the review queue ----------------------------------------------------------------------------

def contact_match_counts() -> dict[str, int]:
    """Contacts not deleted, per match status (each status, 0 when none), in one query."""
    found = dict(ExternalContact.objects.filter(deleted_at=None).order_by().values_list("match_status")
                 .annotate(n=Count("pk")))
    return {status: found.get(status, 0) for status in sorted(Match.values)}


def review_queue():
    return (ExternalContact.objects.filter(match_status=Match.UNMATCHED, deleted_at=None)
            .prefetch_related("follows__staff").order_by("-updated_at", "-pk"))


def review_rows(contacts) -> list[dict]:
    """A page of the review queue for display: each contact with its live follows and their mobiles, masked."""
    rows = []
    for contact in contacts:
        follows = [f for f in contact.follows.all() if f.deleted_at is None]
        rows.append({"contact": contact, "follows": follows,
                     "mobiles_masked": [mask_mobile(m) for m in follow_mobiles(follows)]})
    return rows


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


def _review_resolve(*, actor, contact_id: int, status: str, customer_for=None, action: str) -> ExternalContact:
    """Resolve one contact of the review queue: ``customer_for(contact)`` (if given) names its customer."""
    contact = _review_contact(contact_id)
    customer = customer_for(contact) if customer_for else None
    contact.customer = customer or contact.customer
    contact.match_status, contact.match_method = status, "created" if status == Match.CREATED else "manual"
    contact.updated_at = timezone.now()
    contact.save(update_fields=["customer", "match_status", "match_method", "updated_at"])
    if status == Match.MATCHED:
        _customer_claim_wecom_id(customer, contact.external_userid)
    if contact.customer_id and status in (Match.MATCHED, Match.CREATED):
        _pending_adds_release([contact])  # the client added an advisor while unmatched: SOP journeys start now
    audit_record(actor=actor, action=action, target_type="wecom.externalcontact", target_id=contact.external_userid,
                 details={"customer": customer.external_id} if customer else None)
    return contact


def _review_customer(customer_query: str) -> Customer:
    customer = review_customer_find(customer_query)
    if customer is None:
        raise ApplicationError("wecom_customer_not_found", _("没有找到唯一的客户：请输入准确的客户号或手机号"),
                               [{"field": "customer", "message": _("没有找到唯一的客户")}])
    return customer


@transaction.atomic
def contact_link(*, actor, contact_id: int, customer_query: str) -> ExternalContact:
    return _review_resolve(actor=actor, contact_id=contact_id, status=Match.MATCHED, action="wecom.contact_link",
                           customer_for=lambda _contact: _review_customer(customer_query))


@transaction.atomic
def contact_customer_create(*, actor, contact_id: int) -> ExternalContact:
    return _review_resolve(actor=actor, contact_id=contact_id, status=Match.CREATED,
                           action="wecom.contact_create_customer",
                           customer_for=lambda contact: _prospect_create(contact, advisor=None))


@transaction.atomic
def contact_ignore(*, actor, contact_id: int) -> ExternalContact:
    return _review_resolve(actor=actor, contact_id=contact_id, status=Match.IGNORED, action="wecom.contact_ignore")
