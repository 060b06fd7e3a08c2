"""Corp tags (企业客户标签) both ways.

1. ``corp_tags_pull``: get_corp_tag_list → CorpTag rows (``corp_tags_store``, which the tag callbacks use
   too; tags gone from WeCom get ``deleted_at`` and lose their link in ``corp_tags_delete``); each CorpTag
   links to our Tag with that ``wecom_tag_id``, else to an active Tag of the same name that has no WeCom tag yet.
2. ``corp_tags_push``: our tags marked ``sync_to_wecom`` without a WeCom id are created with add_corp_tag
   (in a tag group named after the tag's category) and linked.
3. ``contact_tags_sync``: for matched contacts, (a) WeCom tags on the contact whose CorpTag is linked
   become our tags (source "wecom") when the customer does not have them; (b) our rule/manual tags of
   tags marked ``sync_to_wecom`` are added in WeCom with mark_tag, per following staff member.
   Only additions travel: removing a tag on one side does not remove it on the other.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from integrations.wecom.client import WecomClient
from integrations.wecom.models import ContactFollow, CorpTag, ExternalContact
from tagging.models import CustomerTag, Tag, TagSource
from tagging.services import customer_tag_add

ACTOR = "wecom-sync"
PUSHED_SOURCES = (TagSource.MANUAL, TagSource.RULE)


def corp_tags_delete(rows, *, at) -> int:
    """Mark these CorpTags deleted in WeCom and drop their link to our Tag, which then names no WeCom tag any
    more (a dead id would fail every mark_tag; a tag still marked ``sync_to_wecom`` is created again by the
    next push). The one place a WeCom tag's deletion is applied: full syncs and callbacks both come here."""
    gone = list(rows.select_for_update().filter(deleted_at__isnull=True))
    for row in gone:
        if row.tag_id:
            Tag.objects.filter(pk=row.tag_id, wecom_tag_id=row.wecom_tag_id).update(wecom_tag_id="")
    return CorpTag.objects.filter(pk__in=[r.pk for r in gone]).update(deleted_at=at, tag=None)


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
    return {"created_in_wecom": created}


def contact_tags_sync(client: WecomClient) -> dict:
    counts = {"pulled": 0, "marked": 0, "mark_calls": 0}
    corp_to_tag = dict(CorpTag.objects.filter(deleted_at=None, tag__isnull=False, tag__active=True)
                       .values_list("wecom_tag_id", "tag_id"))
    synced = dict(Tag.objects.filter(sync_to_wecom=True, active=True).exclude(wecom_tag_id="")
                  .values_list("pk", "wecom_tag_id"))
    tags = {t.pk: t for t in Tag.objects.filter(pk__in=set(corp_to_tag.values()) | set(synced))}
    contacts = list(ExternalContact.objects.filter(customer__isnull=False, deleted_at=None,
                                                   match_status__in=[ExternalContact.Match.MATCHED,
                                                                     ExternalContact.Match.CREATED])
                    .select_related("customer").order_by("pk"))
    follows_by_contact: dict[int, list[ContactFollow]] = defaultdict(list)
    for follow in ContactFollow.objects.filter(deleted_at=None, contact__in=contacts).order_by("pk"):
        follows_by_contact[follow.contact_id].append(follow)
    now = timezone.now()
    # each customer's current tags (tag → source), shared by contacts of the same customer and kept current
    have_by_customer: dict[int, dict[int, str]] = defaultdict(dict)
    for tag_id, customer_id, source, expires_at in CustomerTag.objects.filter(
            customer_id__in={c.customer_id for c in contacts}).values_list("tag_id", "customer_id", "source", "expires_at"):
        if expires_at is None or expires_at > now:
            have_by_customer[customer_id][tag_id] = source
    group_of = dict(Tag.objects.exclude(exclusive_group="").values_list("pk", "exclusive_group"))
    for contact in contacts:
        customer = contact.customer
        follows = follows_by_contact.get(contact.pk, [])
        have = have_by_customer[customer.pk]
        # (a) WeCom → us; a tag of an exclusive group only when the customer has none of that group and
        # WeCom names just one (otherwise two runs would displace each other's tag forever)
        incoming = sorted({corp_to_tag[t] for f in follows for t in f.wecom_tag_ids if t in corp_to_tag})
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
        # (b) us → WeCom
        wanted = {synced[tag_id] for tag_id, source in have.items() if tag_id in synced and source in PUSHED_SOURCES}
        for follow in follows:
            add = sorted(wanted - set(follow.wecom_tag_ids))
            if not add:
                continue
            client.external_contact.mark_tag(follow.userid, contact.external_userid, add_tag=add)
            follow.wecom_tag_ids = sorted(set(follow.wecom_tag_ids) | set(add))
            follow.save(update_fields=["wecom_tag_ids"])
            counts["mark_calls"] += 1
            counts["marked"] += len(add)
    return counts
