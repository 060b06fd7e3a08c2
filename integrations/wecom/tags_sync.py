"""Corp tags (企业客户标签) both ways.

1. ``corp_tags_pull``: get_corp_tag_list → CorpTag rows (``corp_tags_store``, which the tag callbacks use
   too; tags gone from WeCom get ``deleted_at`` and lose their link in ``corp_tags_delete``); each CorpTag
   links to our Tag with that ``wecom_tag_id``, else to an active Tag of the same name that has no WeCom tag yet.
2. ``corp_tags_push``: our tags marked ``sync_to_wecom`` without a WeCom id are created with add_corp_tag
   (in a tag group named after the tag's category) and linked.
3. ``contact_tags_sync``: for matched contacts, additions and removals both ways, told apart by each
   follow's ``synced_tag_ids`` (WeCom's tags on it at the last reconciliation; see the function).
4. ``corp_tags_delete``: a corp tag deleted in WeCom is taken off the customers whose contacts carried it;
   ``corp_tags_retire``: our tag marked for sync and then deactivated is deleted in WeCom.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from customers.models import Customer
from integrations.wecom.client import WecomClient
from integrations.wecom.models import ContactFollow, CorpTag, ExternalContact
from tagging.models import CustomerTag, Tag, TagSource
from tagging.services import customer_tag_add, customer_tag_remove

ACTOR = "wecom-sync"
PUSHED_SOURCES = (TagSource.MANUAL, TagSource.RULE, TagSource.GROUP)


def corp_tags_delete(rows, *, at, remove_from_customers: bool = True) -> int:
    """Mark these CorpTags deleted in WeCom and drop their link to our Tag, which then names no WeCom tag any
    more (a dead id would fail every mark_tag; a tag still marked ``sync_to_wecom`` is created again by the
    next push). The one place a WeCom tag's deletion is applied: full syncs and callbacks both come here.

    A deletion in WeCom takes the tag off every contact there, so (``remove_from_customers``) our tag is taken
    off the customers whose contacts carried it, each with a history row; the follows forget the id."""
    gone = list(rows.select_for_update().filter(deleted_at__isnull=True))
    for row in gone:
        carriers = ContactFollow.objects.filter(Q(wecom_tag_ids__contains=[row.wecom_tag_id])
                                                | Q(synced_tag_ids__contains=[row.wecom_tag_id]))
        if remove_from_customers and row.tag_id:
            customer_ids = set(carriers.filter(deleted_at=None, contact__customer__isnull=False, contact__match_status__in=[
                ExternalContact.Match.MATCHED, ExternalContact.Match.CREATED]).values_list("contact__customer_id", flat=True))
            for customer in Customer.objects.filter(pk__in=customer_ids, tags__tag_id=row.tag_id).order_by("pk"):
                customer_tag_remove(customer=customer, tag=row.tag, source=TagSource.WECOM, actor=ACTOR,
                                    reason=f"企业微信中已删除标签「{row.group_name}/{row.name}」")
        for follow in carriers:
            follow.wecom_tag_ids = [t for t in follow.wecom_tag_ids if t != row.wecom_tag_id]
            follow.synced_tag_ids = [t for t in follow.synced_tag_ids if t != row.wecom_tag_id]
            follow.save(update_fields=["wecom_tag_ids", "synced_tag_ids"])
        if row.tag_id:
            Tag.objects.filter(pk=row.tag_id, wecom_tag_id=row.wecom_tag_id).update(wecom_tag_id="")
    synced_tag_codes_forget()
    return CorpTag.objects.filter(pk__in=[r.pk for r in gone]).update(deleted_at=at, tag=None)


def corp_tags_retire(client: WecomClient) -> dict:
    """Our tags marked 同步到企业微信 that were deactivated here are deleted in WeCom (del_corp_tag) and
    unlinked; customers keep their rows of the inactive tag. A tag WeCom no longer has (40068) counts as deleted."""
    from integrations.wecom.client import WecomError

    retired = list(Tag.objects.filter(active=False, sync_to_wecom=True).exclude(wecom_tag_id=""))
    for tag in retired:
        try:
            client.post("externalcontact/del_corp_tag", data={"tag_id": [tag.wecom_tag_id]})
        except WecomError as exc:
            if getattr(exc, "errcode", None) != 40068:
                raise
        with transaction.atomic():
            corp_tags_delete(CorpTag.objects.filter(wecom_tag_id=tag.wecom_tag_id), at=timezone.now(),
                             remove_from_customers=False)
            Tag.objects.filter(pk=tag.pk).update(wecom_tag_id="")
    return {"deleted_in_wecom": len(retired)}


@transaction.atomic
def corp_tags_store(tag_groups: list[dict], *, complete: bool) -> dict:
    """Upsert CorpTag rows from get_corp_tag_list's ``tag_group`` list, then link the unlinked ones to our
    tags. Tags or groups flagged ``deleted`` are deleted; with ``complete`` (the whole list, as a sync reads
    it) so is every tag the list lacks, while a callback's partial list leaves the others alone."""
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "linked": 0}
    now = timezone.now()
    seen, flagged = set(), set()
    listed = {str(t["id"]) for g in tag_groups for t in g.get("tag") or []}
    rows = CorpTag.objects.select_for_update()
    existing = {c.wecom_tag_id: c for c in (rows if complete else rows.filter(wecom_tag_id__in=listed))}
    for group in tag_groups:
        for tag in group.get("tag") or []:
            tag_id = str(tag["id"])
            if group.get("deleted") or tag.get("deleted"):
                flagged.add(tag_id)
                continue
            seen.add(tag_id)
            values = {"group_id": str(group.get("group_id") or ""), "group_name": str(group.get("group_name") or "")[:50],
                      "name": str(tag.get("name") or "")[:50], "order": int(tag.get("order") or 0), "deleted_at": None}
            row = existing.get(tag_id)
            if row is None:
                existing[tag_id] = CorpTag.objects.create(wecom_tag_id=tag_id, synced_at=now, **values)
                counts["created"] += 1
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                row.synced_at = now
                row.save()
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
    gone = (set(existing) - seen) if complete else flagged
    counts["deleted"] = corp_tags_delete(CorpTag.objects.filter(wecom_tag_id__in=gone), at=now) if gone else 0
    # link: our Tag with that wecom_tag_id, else an unlinked active Tag of the same name
    by_wecom_id = {t.wecom_tag_id: t for t in Tag.objects.exclude(wecom_tag_id="")}
    linked_tag_ids = set(CorpTag.objects.filter(tag__isnull=False).values_list("tag_id", flat=True))
    by_name = {}
    for tag in Tag.objects.filter(active=True, wecom_tag_id="").order_by("pk"):
        by_name.setdefault(tag.name, tag)
    for row in CorpTag.objects.filter(deleted_at=None, tag__isnull=True).order_by("pk"):
        tag = by_wecom_id.get(row.wecom_tag_id) or by_name.get(row.name)
        if tag is None or tag.pk in linked_tag_ids:
            continue
        row.tag = tag
        row.save(update_fields=["tag"])
        if tag.wecom_tag_id != row.wecom_tag_id:
            Tag.objects.filter(pk=tag.pk).update(wecom_tag_id=row.wecom_tag_id)
        linked_tag_ids.add(tag.pk)
        by_name.pop(tag.name, None)
        counts["linked"] += 1
    synced_tag_codes_forget()
    return counts


def corp_tags_pull(client: WecomClient) -> dict:
    answer = client.external_contact.get_corp_tag_list()
    return corp_tags_store(answer.get("tag_group") or [], complete=True)


def corp_tags_push(client: WecomClient) -> dict:
    """Create our sync_to_wecom tags that WeCom does not have yet; one add_corp_tag per tag group."""
    pending = list(Tag.objects.filter(sync_to_wecom=True, active=True, wecom_tag_id="").select_related("category")
                   .order_by("category__position", "code"))
    by_group: dict[str, list[Tag]] = defaultdict(list)
    for tag in pending:
        by_group[tag.category.name].append(tag)
    created = 0
    for group_name, tags in by_group.items():
        answer = client.external_contact.add_corp_tag(
            group_id=None, group_name=group_name, order=0, tags=[{"name": t.name[:30], "order": 0} for t in tags])
        group = answer["tag_group"]
        ids = {t["name"]: str(t["id"]) for t in group.get("tag") or []}
        with transaction.atomic():
            for tag in tags:
                tag_id = ids.get(tag.name[:30])
                if not tag_id:
                    continue
                Tag.objects.filter(pk=tag.pk).update(wecom_tag_id=tag_id)
                CorpTag.objects.update_or_create(wecom_tag_id=tag_id, defaults={
                    "group_id": str(group["group_id"]), "group_name": group_name[:50], "name": tag.name[:30],
                    "tag": tag, "deleted_at": None, "synced_at": timezone.now()})
                created += 1
    synced_tag_codes_forget()
    return {"created_in_wecom": created}


def _contact_tag_state(contacts: list[ExternalContact]):
    """What reconciling these contacts reads, once: linked corp tags, our synced tags, live follows, and each
    customer's current tags (tag → source)."""
    corp_to_tag = dict(CorpTag.objects.filter(deleted_at=None, tag__isnull=False, tag__active=True)
                       .values_list("wecom_tag_id", "tag_id"))
    synced = dict(Tag.objects.filter(sync_to_wecom=True, active=True).exclude(wecom_tag_id="")
                  .values_list("pk", "wecom_tag_id"))
    tags = {t.pk: t for t in Tag.objects.filter(pk__in=set(corp_to_tag.values()) | set(synced))}
    follows_by_contact: dict[int, list[ContactFollow]] = defaultdict(list)
    for follow in ContactFollow.objects.filter(deleted_at=None, contact__in=contacts).select_related("staff").order_by("pk"):
        follows_by_contact[follow.contact_id].append(follow)
    now = timezone.now()
    have_by_customer: dict[int, dict[int, str]] = defaultdict(dict)
    for tag_id, customer_id, source, expires_at in CustomerTag.objects.filter(
            customer_id__in={c.customer_id for c in contacts}).values_list("tag_id", "customer_id", "source", "expires_at"):
        if expires_at is None or expires_at > now:
            have_by_customer[customer_id][tag_id] = source
    group_of = dict(Tag.objects.exclude(exclusive_group="").values_list("pk", "exclusive_group"))
    return corp_to_tag, synced, tags, follows_by_contact, have_by_customer, group_of


def contact_tags_sync(client: WecomClient, contacts: list[ExternalContact] | None = None) -> dict:
    """Reconcile the tags of matched contacts (all of them, or ``contacts``) with their customers', both ways.

    Each follow keeps ``synced_tag_ids``: WeCom's tags on it when last reconciled. Against that baseline a
    change on either side is told apart from a change on the other:

    * a linked corp tag on a follow that was not there last time was added in WeCom → our tag (source 企业微信);
    * a linked corp tag gone from a follow that had it last time was removed in WeCom (by staff, or the tag was
      deleted) → our tag is removed, with a history row;
    * our tag marked 同步到企业微信 that the customer no longer has (removed, expired, displaced) while a follow
      still has it, and had it last time → mark_tag remove_tag on that follow;
    * our manual/rule tag marked 同步到企业微信 missing on a follow → mark_tag add_tag.

    Idempotent: with nothing changed on either side it reads and writes nothing more."""
    counts = {"pulled": 0, "removed_here": 0, "marked": 0, "unmarked": 0, "mark_calls": 0}
    if contacts is None:
        contacts = list(ExternalContact.objects.filter(customer__isnull=False, deleted_at=None, match_status__in=[
            ExternalContact.Match.MATCHED, ExternalContact.Match.CREATED]).select_related("customer").order_by("pk"))
    contacts = [c for c in contacts if c.customer_id and c.deleted_at is None]
    corp_to_tag, synced, tags, follows_by_contact, have_by_customer, group_of = _contact_tag_state(contacts)
    synced_by_wecom_id = {wecom_id: tag_id for tag_id, wecom_id in synced.items()}
    baseline_changed: list[ContactFollow] = []
    for contact in contacts:
        customer = contact.customer
        follows = follows_by_contact.get(contact.pk, [])
        have = have_by_customer[customer.pk]
        # (1) removed in WeCom: on a follow last time, gone now
        removed_by: dict[int, list[str]] = defaultdict(list)
        for follow in follows:
            for wecom_id in set(follow.synced_tag_ids) - set(follow.wecom_tag_ids):
                if wecom_id in corp_to_tag:
                    removed_by[corp_to_tag[wecom_id]].append(
                        (follow.staff.display_name or follow.staff.username) if follow.staff else follow.userid)
        gone = sorted(removed_by)
        for tag_id in gone:
            if tag_id in have:
                customer_tag_remove(customer=customer, tag=tags[tag_id], source=TagSource.WECOM, actor=ACTOR,
                                    reason=f"企业微信中已移除该标签（{'、'.join(sorted(removed_by[tag_id]))}）")
                del have[tag_id]
                counts["removed_here"] += 1
        # (2) added in WeCom: on a follow now, not last time; a tag of an exclusive group only when the customer
        # has none of that group and WeCom names just one (otherwise two runs would displace each other's tag)
        incoming = sorted({corp_to_tag[t] for f in follows for t in set(f.wecom_tag_ids) - set(f.synced_tag_ids)
                           if t in corp_to_tag} - set(gone))
        held_groups = {group_of[t] for t in have if t in group_of}
        incoming_groups = [tags[t].exclusive_group for t in incoming if tags[t].exclusive_group]
        for tag_id in incoming:
            group = tags[tag_id].exclusive_group
            if group and (group in held_groups or incoming_groups.count(group) > 1):
                continue
            if tag_id not in have:
                customer_tag_add(customer=customer, tag=tags[tag_id], source=TagSource.WECOM, actor=ACTOR,
                                 evidence="企业微信客户标签")
                have[tag_id] = TagSource.WECOM
                if group:
                    held_groups.add(group)
                counts["pulled"] += 1
        # (3) us → WeCom: additions of our manual/rule tags, removals of any synced tag we no longer have
        wanted = {synced[tag_id] for tag_id, source in have.items() if tag_id in synced and source in PUSHED_SOURCES}
        for follow in follows:
            current = set(follow.wecom_tag_ids)
            add = sorted(wanted - current)
            remove = sorted(t for t in current & set(follow.synced_tag_ids)
                            if t in synced_by_wecom_id and synced_by_wecom_id[t] not in have)
            if add or remove:
                client.external_contact.mark_tag(follow.userid, contact.external_userid, add_tag=add or None,
                                                 remove_tag=remove or None)
                follow.wecom_tag_ids = sorted((current | set(add)) - set(remove))
                counts["mark_calls"] += 1
                counts["marked"] += len(add)
                counts["unmarked"] += len(remove)
            if sorted(follow.synced_tag_ids) != sorted(follow.wecom_tag_ids):
                follow.synced_tag_ids = sorted(follow.wecom_tag_ids)
                baseline_changed.append(follow)
    ContactFollow.objects.bulk_update(baseline_changed, ["wecom_tag_ids", "synced_tag_ids"], batch_size=500)
    return counts


# --- right away: a tag changed on one customer by hand -----------------------------------------------

SYNCED_CODES_KEY = "wecom:synced-tag-codes"
# sources that change one customer at human speed; rule runs change thousands at once and are left to the sync
PUSHED_AT_ONCE = (TagSource.MANUAL, TagSource.API, TagSource.CONVERSATION)


def synced_tag_codes() -> set[str]:
    """Codes of our tags marked 同步到企业微信 that have a WeCom tag (cached a minute: the hook below runs for
    every tag change of every customer, and most tags are not synced)."""
    from django.core.cache import cache

    return set(cache.get_or_set(SYNCED_CODES_KEY, lambda: list(
        Tag.objects.filter(sync_to_wecom=True, active=True).exclude(wecom_tag_id="").values_list("code", flat=True)),
        60))


def synced_tag_codes_forget() -> None:
    from django.core.cache import cache

    cache.delete(SYNCED_CODES_KEY)


def customer_tag_changed_push(event) -> None:
    """core.events.TagChanged (after commit): a synced tag added or removed on one customer by hand, the API or a
    conversation reaches WeCom in seconds (task ``wecom.contact_tags_push``) instead of at the next sync. Changes
    that came from WeCom, and rule runs, are not pushed here."""
    customer_id, tag_code, source = event.customer_id, event.tag_code, event.source
    if source not in PUSHED_AT_ONCE or tag_code not in synced_tag_codes():
        return
    if not ExternalContact.objects.filter(customer_id=customer_id, deleted_at=None).exists():
        return
    from integrations.wecom.tasks_sync import contact_tags_push

    contact_tags_push.delay(customer_id)


def customer_tags_push(client: WecomClient, *, customer_id: int) -> dict:
    """Reconcile the tags of one customer's WeCom contacts now (see :func:`contact_tags_sync`)."""
    contacts = list(ExternalContact.objects.filter(customer_id=customer_id, deleted_at=None, match_status__in=[
        ExternalContact.Match.MATCHED, ExternalContact.Match.CREATED]).select_related("customer"))
    with transaction.atomic():
        return contact_tags_sync(client, contacts)
