"""WeCom sync: follow users → staff, external contacts with their follow info (linked to customers),
corp tags both ways, and group chats. Each run is a SyncRun with counts, token refreshes and the error.

* ``contacts``: get_follow_user_list, then batch/get_by_user (100 userids per call, cursor pages of 100);
  each page is written in one transaction, so a failure keeps every page before it. After a complete pass,
  follows WeCom no longer lists get ``deleted_at`` (and contacts with no follow left).
* ``tags``: corp tags pulled and linked, ours marked for sync created in WeCom (and deleted there once
  deactivated here), then tags on matched contacts both ways, additions and removals (tags_sync.py).
* ``groups``: groupchat/list (cursor) + groupchat/get per chat → groups.services.group_sync_from_wecom.
* ``all``: tags (pull/push), contacts, contact tags, groups.

Everything is an upsert that compares before writing, so a second run over unchanged data changes nothing.
One run at a time (a PostgreSQL advisory lock); a second one returns None. Any WeCom error the client does
not absorb (token refreshed once, frequency limits backed off) ends the run ``failed`` with the errcode.
"""

from __future__ import annotations

import logging
import time

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from integrations.sync_lock import sync_lock
from integrations.wecom.client import WecomClient, wecom_client
from integrations.wecom.contacts import contact_match_counts, contacts_rematch_by_unionid, contacts_upsert_from_wecom
from integrations.wecom.models import ContactFollow, ExternalContact, SyncRun
from integrations.wecom.tags_sync import contact_tags_sync, corp_tags_pull, corp_tags_push, corp_tags_retire

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x7765636F6D73  # "wecoms"
USERS_PER_CALL = 100
CONTACTS_PER_PAGE = 100
CHATS_PER_PAGE = 1000
Kind = SyncRun.Kind


def _follow_users(client: WecomClient, counts: dict) -> list[str]:
    from core.models import User

    userids = list(client.external_contact.get_follow_user_list().get("follow_user") or [])
    known = set(User.objects.filter(wecom_userid__in=userids).values_list("wecom_userid", flat=True))
    unknown = sorted(set(userids) - known)
    counts["follow_users"] = {"total": len(userids), "known": len(known), "unknown": len(unknown),
                              "unknown_userids": unknown[:20]}
    return userids


def contacts_sync(client: WecomClient, counts: dict) -> None:
    started = timezone.now()
    userids = _follow_users(client, counts)
    tally = {"seen": 0, "written": 0, "unchanged": 0, "pages": 0}
    seen_follows: set[tuple[str, str]] = set()
    staff_cache: dict = {}
    for start in range(0, len(userids), USERS_PER_CALL):
        chunk = userids[start:start + USERS_PER_CALL]
        cursor = ""
        while True:
            page = client.post("externalcontact/batch/get_by_user",
                               data={"userid_list": chunk, "cursor": cursor, "limit": CONTACTS_PER_PAGE})
            items = [(item["external_contact"], [item["follow_info"]] if item.get("follow_info") else [])
                     for item in page.get("external_contact_list") or []]
            for (_contact, changed), (external, follows) in zip(
                    contacts_upsert_from_wecom(items, staff_cache=staff_cache), items, strict=True):
                seen_follows.add((external["external_userid"], str(follows[0].get("userid") or "") if follows else ""))
                tally["seen"] += 1
                tally["written" if changed else "unchanged"] += 1
            tally["pages"] += 1
            cursor = page.get("next_cursor") or ""
            if not cursor:
                break
    tally["linked_by_unionid_after_pass"] = contacts_rematch_by_unionid()
    counts["contacts"] = tally
    # a complete pass: what WeCom no longer lists is gone
    now = timezone.now()
    gone = 0
    with transaction.atomic():
        # follows that arrived during the pass (callbacks) were not in the pages: keep them
        live = (ContactFollow.objects.filter(deleted_at=None, contact__created_at__lt=started)
                .exclude(added_at__gte=started).values_list("pk", "contact__external_userid", "userid"))
        stale = [pk for pk, eid, userid in live if (eid, userid) not in seen_follows]
        if stale:
            gone = ContactFollow.objects.filter(pk__in=stale).update(deleted_at=now)
        orphaned = (ExternalContact.objects.filter(deleted_at=None)
                    .exclude(follows__deleted_at=None).exclude(follows__isnull=True))
        contacts_gone = orphaned.update(deleted_at=now, updated_at=now)
    counts["contacts"]["follows_removed"] = gone
    counts["contacts"]["contacts_removed"] = contacts_gone
    counts["match"] = contact_match_counts()


def tags_sync(client: WecomClient, counts: dict, *, contact_tags: bool = True) -> None:
    counts["corp_tags"] = corp_tags_pull(client)
    counts["corp_tags"].update(corp_tags_push(client))
    counts["corp_tags"].update(corp_tags_retire(client))
    if contact_tags:
        counts["contact_tags"] = contact_tags_sync(client)


def groups_sync(client: WecomClient, counts: dict) -> None:
    from groups.services import group_sync_from_wecom

    tally = {"seen": 0, "pages": 0}
    cursor = ""
    chat_ids: list[str] = []
    while True:
        page = client.external_contact_group_chat.list(limit=CHATS_PER_PAGE, cursor=cursor or None)
        chat_ids += [c["chat_id"] for c in page.get("group_chat_list") or []]
        tally["pages"] += 1
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    for chat_id in chat_ids:
        answer = client.post("externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1})
        group_sync_from_wecom(answer["group_chat"])
        tally["seen"] += 1
    counts["groups"] = tally


def wecom_sync_run(*, kind: str = Kind.ALL, requested_by: str = "", client: WecomClient | None = None
                   ) -> SyncRun | None:
    """Run one sync now (in this process); None when another sync holds the lock."""
    if kind not in Kind.values:
        raise ApplicationError("wecom_sync_kind", f"unknown sync kind {kind}")
    with sync_lock(ADVISORY_LOCK_KEY, "wecom sync") as got:
        if not got:
            return None
        run = SyncRun.objects.create(kind=kind, requested_by=requested_by[:150])
        started = time.monotonic()
        counts: dict = {}
        try:
            client = client or wecom_client()
            if kind == Kind.ALL:
                tags_sync(client, counts, contact_tags=False)
                contacts_sync(client, counts)
                counts["contact_tags"] = contact_tags_sync(client)
                groups_sync(client, counts)
            elif kind == Kind.CONTACTS:
                contacts_sync(client, counts)
            elif kind == Kind.TAGS:
                tags_sync(client, counts)
            elif kind == Kind.GROUPS:
                groups_sync(client, counts)
            run.status = SyncRun.Status.DONE
        except ApplicationError as exc:  # WecomError and friends: a clear message with the errcode
            logger.warning("wecom sync %s failed: %s", run.pk, exc.message)
            run.status, run.error = SyncRun.Status.FAILED, exc.message
        except Exception as exc:  # noqa: BLE001 - recorded on the run, and logged with the traceback
            logger.exception("wecom sync %s crashed", run.pk)
            run.status, run.error = SyncRun.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        counts["duration_ms"] = int((time.monotonic() - started) * 1000)
        run.counts = counts
        run.token_refreshes = min(getattr(client, "token_refreshes", 0) or 0, 32767)
        if getattr(client, "rate_limited", 0):
            counts["rate_limited"] = client.rate_limited
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "counts", "token_refreshes", "finished_at"])
        return run


def sync_runs(limit: int = 50):
    return SyncRun.objects.order_by("-started_at", "-pk")[:limit]
