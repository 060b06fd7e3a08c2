"""Community groups: WeCom sync of group chats and their members, purpose/audience, join-way QR codes,
invitation tasks and the daily health record.

The WeCom sync and the callbacks call ``group_sync_from_wecom`` and ``group_dismissed``; both are
idempotent (the same input twice changes nothing) and lock the group row, so a sync and a callback
on the same group never record a join or a leave twice.
"""

import logging
from collections import defaultdict
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.access import roles_for
from core.errors import ApplicationError
from core.events import GroupMembersChanged, emit
from core.models import Role, User
from core.services import audit_record
from customers.models import Customer, Task
from customers.services import tasks_create
from groups import selectors
from groups.error_codes import GroupError
from groups.models import GroupChat, GroupDailyStat, GroupMember, GroupMemberEvent, Purpose, PurposeTagRule
from integrations.wecom.client import wecom_time
from segments.models import Segment

logger = logging.getLogger(__name__)


def _link_customers(external_userids: set[str]) -> dict[str, int]:
    """external userid → customer id, by Customer.wecom_external_userid (then the synced contact)."""
    if not external_userids:
        return {}
    links = dict(Customer.objects.filter(wecom_external_userid__in=external_userids)
                 .values_list("wecom_external_userid", "pk"))
    missing = external_userids - links.keys()
    if missing:
        try:
            from integrations.wecom.models import ExternalContact
        except ImportError:  # pragma: no cover - the wecom app is always installed
            return links
        links.update(ExternalContact.objects.filter(external_userid__in=missing, customer__isnull=False)
                     .values_list("external_userid", "customer_id"))
    return links


def _members_changed_emit(group_id: int, events: list[GroupMemberEvent]) -> None:
    joined = tuple(sorted({e.customer_id for e in events if e.customer_id and e.kind == GroupMemberEvent.Kind.JOIN}))
    left = tuple(sorted({e.customer_id for e in events if e.customer_id and e.kind == GroupMemberEvent.Kind.LEAVE}))
    if joined or left:
        emit(GroupMembersChanged(group_id=group_id, joined_customer_ids=joined, left_customer_ids=left))


@transaction.atomic
def group_sync_from_wecom(group_chat: dict, *, at: datetime | None = None) -> GroupChat:
    """Upsert a group from the ``group_chat`` object of POST /cgi-bin/externalcontact/groupchat/get.

    The owner's userid maps to a staff user (``wecom_userid``), who gives the group its advisor and
    branch; external members (type 2) are linked to customers. The member list is diffed with the
    stored current members: newcomers (or returning members) get a join event, members no longer
    listed get ``left_at`` and a leave event (at ``at``, default now).
    """
    at = at or timezone.now()
    chat_id = str(group_chat["chat_id"])
    owner_userid = str(group_chat.get("owner") or "")
    owner = User.objects.filter(wecom_userid=owner_userid).first() if owner_userid else None

    fields = {
        "name": (group_chat.get("name") or "")[:100] or chat_id[:100],
        "owner_userid": owner_userid,
        "advisor_id": owner.pk if owner else None,
        "branch_id": owner.branch_id if owner else None,
        "notice": group_chat.get("notice") or "",
        "wecom_created_at": wecom_time(group_chat.get("create_time")),
        "status": GroupChat.Status.ACTIVE,
    }
    group, _created = GroupChat.objects.get_or_create(chat_id=chat_id, defaults=fields)
    group = GroupChat.objects.select_for_update().get(pk=group.pk)

    # --- members: diff the WeCom list with what we store -------------------------------------
    incoming: dict[str, dict] = {}
    for m in group_chat.get("member_list") or []:
        userid = str(m.get("userid") or "")
        if userid:
            incoming[userid] = m
    links = _link_customers({u for u, m in incoming.items() if int(m.get("type") or 2) == GroupMember.Type.EXTERNAL})
    stored = {m.userid: m for m in GroupMember.objects.filter(group=group)}

    new_members, changed, events = [], [], []
    update_fields = {"type", "name", "unionid", "customer_id", "join_scene", "joined_at", "left_at"}
    for userid, m in incoming.items():
        mtype = int(m.get("type") or 2)
        values = {
            "type": mtype,
            "name": (m.get("group_nickname") or m.get("name") or "")[:100],
            "unionid": (m.get("unionid") or "")[:64],
            "customer_id": links.get(userid) if mtype == GroupMember.Type.EXTERNAL else None,
            "join_scene": int(m.get("join_scene") or 0),
        }
        joined_at = wecom_time(m.get("join_time"))
        current = stored.get(userid)
        if current is None:
            new_members.append(GroupMember(group=group, userid=userid, joined_at=joined_at or at, **values))
            events.append(GroupMemberEvent(group=group, userid=userid, customer_id=values["customer_id"],
                                           kind=GroupMemberEvent.Kind.JOIN, at=joined_at or at))
            continue
        if current.left_at is not None:  # came back
            rejoined_at = joined_at if joined_at and joined_at > current.left_at else at
            values.update(joined_at=rejoined_at, left_at=None)
            events.append(GroupMemberEvent(group=group, userid=userid, customer_id=values["customer_id"],
                                           kind=GroupMemberEvent.Kind.JOIN, at=rejoined_at))
        elif joined_at and current.joined_at != joined_at:
            values["joined_at"] = joined_at
        if any(getattr(current, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(current, k, v)
            changed.append(current)

    for userid, current in stored.items():
        if current.left_at is None and userid not in incoming:
            current.left_at = at
            changed.append(current)
            events.append(GroupMemberEvent(group=group, userid=userid, customer_id=current.customer_id,
                                           kind=GroupMemberEvent.Kind.LEAVE, at=at))

    if new_members:
        GroupMember.objects.bulk_create(new_members)
    if changed:
        GroupMember.objects.bulk_update(changed, sorted(update_fields))
    if events:
        GroupMemberEvent.objects.bulk_create(events)
        _members_changed_emit(group.pk, events)

    fields["member_count"] = len(incoming)
    dirty = [k for k, v in fields.items() if getattr(group, k) != v]
    if dirty or group.synced_at is None:
        for k in dirty:
            setattr(group, k, fields[k])
        group.synced_at = at
        group.save(update_fields=[*dirty, "synced_at"])
    return group


@transaction.atomic
def group_dismissed(chat_id: str, at: datetime | None = None) -> GroupChat | None:
    """The group was dismissed in WeCom: mark it, and every current member leaves (with an event).
    Unknown groups are ignored (None); dismissing twice changes nothing."""
    at = at or timezone.now()
    group = GroupChat.objects.select_for_update().filter(chat_id=str(chat_id)).first()
    if group is None:
        return None
    current = list(GroupMember.objects.filter(group=group, left_at__isnull=True).values_list("userid", "customer_id"))
    if current:
        GroupMember.objects.filter(group=group, left_at__isnull=True).update(left_at=at)
        events = GroupMemberEvent.objects.bulk_create([
            GroupMemberEvent(group=group, userid=userid, customer_id=customer_id, kind=GroupMemberEvent.Kind.LEAVE, at=at)
            for userid, customer_id in current
        ])
        _members_changed_emit(group.pk, events)
    if group.status != GroupChat.Status.DISMISSED or group.member_count:
        group.status, group.member_count = GroupChat.Status.DISMISSED, 0
        group.save(update_fields=["status", "member_count"])
    return group



# --- purpose and audience -----------------------------------------------------------------------

EDIT_ALL_ROLES = roles_for("groups.edit_all")


def group_may_edit(user, group: GroupChat) -> bool:
    """Operators and admins edit any group; branch managers the groups of their branch."""
    role = getattr(user, "role", None)
    if role in EDIT_ALL_ROLES:
        return True
    return role == Role.BRANCH_MANAGER and group.branch_id is not None and group.branch_id == user.branch_id


def audience_choices_for(user):
    """Segments ``user`` may pick as a group's audience: live ones, firm-wide or of their own branch."""
    qs = Segment.objects.filter(archived=False).order_by("name", "pk")
    if getattr(user, "role", None) == Role.BRANCH_MANAGER:
        qs = qs.filter(Q(branch__isnull=True) | Q(branch_id=user.branch_id))
    return qs


@transaction.atomic
def group_update(*, actor, group: GroupChat, purpose: str, audience: Segment | int | None) -> GroupChat:
    if not group_may_edit(actor, group) or not selectors.groups_visible_to(actor).filter(pk=group.pk).exists():
        raise ApplicationError(GroupError.NOT_ALLOWED, _("你不能修改这个群的用途和目标客群"), status_code=403)
    if purpose not in Purpose.values:
        raise ApplicationError(GroupError.PURPOSE_INVALID, _("请选择群的用途"),
                               [{"field": "purpose", "message": _("请选择群的用途")}])
    audience_id = getattr(audience, "pk", audience)
    if audience_id is not None and not audience_choices_for(actor).filter(pk=audience_id).exists():
        message = _("该客群不存在、已归档或不属于你的营业部")
        raise ApplicationError(GroupError.AUDIENCE_INVALID, message, [{"field": "audience", "message": message}])
    before = {"purpose": group.purpose, "audience_id": group.audience_id}
    group = GroupChat.objects.select_for_update().get(pk=group.pk)
    group.purpose, group.audience_id = purpose, audience_id
    group.save(update_fields=["purpose", "audience"])
    audit_record(actor=actor, action="group.update", target_type="group", target_id=group.pk,
                 details={"before": before, "after": {"purpose": purpose, "audience_id": audience_id}})
    return group


# --- tags by purpose (入群自动标签) -------------------------------------------------------------------

GROUP_RULE_ACTOR = "group-rule"


def purpose_tag_rules_may_edit(user) -> bool:
    """Operators and admins set the tags of a purpose (they apply to every group of it, in every branch)."""
    return getattr(user, "role", None) in EDIT_ALL_ROLES


def _rules_guard(actor) -> None:
    if not purpose_tag_rules_may_edit(actor):
        raise ApplicationError(GroupError.NOT_ALLOWED, _("只有运营和管理员可以设置入群自动标签"), status_code=403)


@transaction.atomic
def purpose_tag_rule_add(*, actor, purpose: str, tag, remove_on_leave: bool) -> PurposeTagRule:
    """Clients who join a group of ``purpose`` from now on get ``tag`` (and lose it on leaving the last such group
    when ``remove_on_leave``); adding the same tag again changes ``remove_on_leave``. Audited."""
    from tagging.models import Tag

    _rules_guard(actor)
    if purpose not in Purpose.values:
        raise ApplicationError(GroupError.PURPOSE_INVALID, _("请选择群的用途"), [{"field": "purpose"}])
    if not Tag.objects.filter(pk=getattr(tag, "pk", tag), active=True).exists():
        raise ApplicationError(GroupError.TAG_INVALID, _("请选择一个启用中的标签"), [{"field": "tag"}])
    rule, created = PurposeTagRule.objects.update_or_create(
        purpose=purpose, tag_id=getattr(tag, "pk", tag),
        defaults={"remove_on_leave": bool(remove_on_leave)}, create_defaults={
            "remove_on_leave": bool(remove_on_leave), "created_by": actor})
    audit_record(actor=actor, action="group.purpose_tag_rule_add" if created else "group.purpose_tag_rule_change",
                 target_type="group_purpose", target_id=purpose,
                 details={"purpose": purpose, "tag": rule.tag.code, "remove_on_leave": rule.remove_on_leave})
    return rule


@transaction.atomic
def purpose_tag_rule_delete(*, actor, rule: PurposeTagRule) -> None:
    """Stop tagging on join (tags already given stay; they expire or are removed as usual). Audited."""
    _rules_guard(actor)
    details = {"purpose": rule.purpose, "tag": rule.tag.code, "remove_on_leave": rule.remove_on_leave}
    PurposeTagRule.objects.filter(pk=rule.pk).delete()
    audit_record(actor=actor, action="group.purpose_tag_rule_delete", target_type="group_purpose",
                 target_id=rule.purpose, details=details)


def group_purpose_tags_apply(event: GroupMembersChanged) -> dict:
    """core.events.GroupMembersChanged (after commit): the tags of the group's purpose for the clients who joined
    (still members now), and, for rules with ``remove_on_leave``, off the clients who left and are in no other
    active group of that purpose any more. Through tagging's one writer with source 入群规则: history rows,
    TagChanged, the tag's own lifetime; a tag the client holds from another source (set by hand, a rule …) is
    neither overwritten nor removed. Returns the counts (added, removed)."""
    from tagging.models import TagSource
    from tagging.writer import customer_tags_set

    counts = {"added": 0, "removed": 0}
    group = GroupChat.objects.filter(pk=event.group_id).first()
    if group is None:
        return counts
    rules = list(PurposeTagRule.objects.filter(purpose=group.purpose, tag__active=True).select_related("tag"))
    if not rules:
        return counts
    purpose = Purpose(group.purpose).label
    joined = Customer.objects.filter(pk__in=event.joined_customer_ids, group_memberships__group=group,
                                     group_memberships__left_at__isnull=True)
    still_in_purpose = GroupMember.objects.filter(customer_id=OuterRef("pk"), left_at__isnull=True,
                                                  group__purpose=group.purpose, group__status=GroupChat.Status.ACTIVE)
    left = Customer.objects.filter(pk__in=event.left_customer_ids).exclude(Exists(still_in_purpose))
    for rule in rules:
        if event.joined_customer_ids:
            counts["added"] += len(customer_tags_set(
                tag=rule.tag, source=TagSource.GROUP, actor=GROUP_RULE_ACTOR, customers=joined, overwrite=False,
                evidence=_("加入%(purpose)s「%(name)s」") % {"purpose": purpose, "name": group.name},
                evidence_data={"group_id": group.pk, "rule_id": rule.pk}).added)
        if event.left_customer_ids and rule.remove_on_leave:
            counts["removed"] += len(customer_tags_set(
                tag=rule.tag, source=TagSource.GROUP, actor=GROUP_RULE_ACTOR, add=False, customers=left,
                only_source=TagSource.GROUP,
                evidence=_("退出%(purpose)s「%(name)s」，已不在任何%(purpose)s中") % {"purpose": purpose,
                                                                              "name": group.name}).removed)
    return counts


def purpose_tag_rules_by_purpose() -> list[dict]:
    """Every purpose with its rules and how many active groups have it (the 群用途与自动标签 page)."""
    rules = defaultdict(list)
    for rule in PurposeTagRule.objects.select_related("tag", "tag__category").order_by("purpose", "tag__name"):
        rules[rule.purpose].append(rule)
    groups = dict(GroupChat.objects.filter(status=GroupChat.Status.ACTIVE).values_list("purpose")
                  .annotate(n=Count("pk")).order_by())
    return [{"purpose": value, "label": label, "groups": groups.get(value, 0), "rules": rules[value]}
            for value, label in Purpose.choices]


# --- join way (入群二维码) ----------------------------------------------------------------------

def group_join_way_create(*, actor, group: GroupChat) -> GroupChat:
    """A 加入群聊 QR code for this group through WeCom (scene 2: QR; add_join_way, then get_join_way
    for the qr_code); stored on the group. WeCom failures surface as ApplicationError, nothing stored."""
    if not selectors.groups_visible_to(actor).filter(pk=group.pk).exists():
        raise ApplicationError(GroupError.GROUP_NOT_FOUND, _("群不存在"), status_code=404)
    if group.status != GroupChat.Status.ACTIVE:
        raise ApplicationError(GroupError.NOT_ACTIVE, _("群已解散，不能生成入群二维码"))
    from integrations.wecom.client import WecomError, wecom_client

    try:
        client = wecom_client()
        created = client.post("externalcontact/groupchat/add_join_way", data={
            "scene": 2, "remark": group.name[:30], "auto_create_room": 0,
            "chat_id_list": [group.chat_id], "state": f"grp{group.pk}",
        })
        config_id = created["config_id"]
        answer = client.post("externalcontact/groupchat/get_join_way", data={"config_id": config_id})
        qr_code = (answer.get("join_way") or {}).get("qr_code") or ""
    except (WecomError, KeyError) as exc:
        logger.warning("group join way failed for %s: %s", group.chat_id, exc)
        raise ApplicationError(GroupError.WECOM_FAILED, _("企业微信未能生成入群二维码：%(error)s") % {"error": exc}) from exc
    if not qr_code:
        raise ApplicationError(GroupError.WECOM_FAILED, _("企业微信未返回二维码"))
    with transaction.atomic():
        GroupChat.objects.filter(pk=group.pk).update(join_qr_code=qr_code, join_config_id=config_id)
        audit_record(actor=actor, action="group.join_way_create", target_type="group", target_id=group.pk,
                     details={"config_id": config_id})
    group.join_qr_code, group.join_config_id = qr_code, config_id
    return group


# --- invitation tasks ---------------------------------------------------------------------------

INVITE_DUE_DAYS = 3


def _customer_ids_qs(customers):
    if isinstance(customers, QuerySet):
        return customers.values("pk")
    return [getattr(c, "pk", c) for c in customers]


def _invite_selection(*, actor, group: GroupChat, customers):
    """The one selector of invitations: the requested customers in the actor's scope, annotated, with the counts
    of those skipped; returns (requested count, totals, the customers to create tasks for)."""
    if actor is not None and not selectors.groups_visible_to(actor).filter(pk=group.pk).exists():
        raise ApplicationError(GroupError.GROUP_NOT_FOUND, _("群不存在"), status_code=404)
    if group.status != GroupChat.Status.ACTIVE:
        raise ApplicationError(GroupError.NOT_ACTIVE, _("群已解散，不能邀请"))
    ids = _customer_ids_qs(customers)
    requested = Customer.objects.filter(pk__in=ids)
    in_scope = ((requested.visible_to(actor) if actor is not None else requested)
                .annotate(member=selectors.in_group_exists(group.pk), invited=selectors.open_invite_exists(group.pk)))
    totals = in_scope.aggregate(
        total=Count("pk"),
        already_member=Count("pk", filter=Q(member=True)),
        already_invited=Count("pk", filter=Q(member=False, invited=True)),
        no_advisor=Count("pk", filter=Q(member=False, invited=False, advisor__isnull=True)),
    )
    result = {"requested": requested.count(), "created": 0, "already_member": totals["already_member"],
              "already_invited": totals["already_invited"], "no_advisor": totals["no_advisor"]}
    result["out_of_scope"] = result["requested"] - totals["total"]
    return result, in_scope.filter(member=False, invited=False, advisor__isnull=False)


def _invite_tasks(*, group: GroupChat, todo, dry_run: bool = False):
    title = _("邀请客户加入群「%(name)s」") % {"name": group.name}
    return tasks_create(source=Task.Source.GROUP_INVITE, customers=todo, title=title,
                        due_at=timezone.now() + timedelta(days=INVITE_DUE_DAYS),
                        source_label=selectors.invite_task_source_label(group), dry_run=dry_run)


def group_invite_plan(*, actor, group: GroupChat, customers) -> dict:
    """What :func:`group_invite_tasks_create` would do now with the same arguments, creating nothing: the same
    counts, with ``to_create`` (tasks) and ``advisors`` (how many advisors get them), counted by the task creator
    itself (customers.services.tasks_create, dry run). The page shows it before anyone confirms."""
    result, todo = _invite_selection(actor=actor, group=group, customers=customers)
    made = _invite_tasks(group=group, todo=todo, dry_run=True)
    result.update(to_create=made.would_create, advisors=made.assignees)
    result["no_advisor"] += made.out_of_scope
    return result


@transaction.atomic
def group_invite_tasks_create(*, actor, group: GroupChat, customers) -> dict:
    """One task per customer for their advisor to invite them into ``group`` (due in 3 days).

    ``customers`` is a Customer queryset (or ids); only those in the actor's scope count (``actor=None``
    is the system, e.g. an SOP step: no scope cut). Skipped: current members, customers with an open
    invite task for this group, customers without an advisor.
    Returns the counts: requested, created, already_member, already_invited, no_advisor, out_of_scope.
    """
    group = GroupChat.objects.select_for_update().get(pk=group.pk)  # one invite run per group at a time
    result, todo = _invite_selection(actor=actor, group=group, customers=customers)
    made = _invite_tasks(group=group, todo=todo)
    result["created"] = len(made.created)
    result["no_advisor"] += made.out_of_scope  # an advisor who left cannot take the invitation
    audit_record(actor=actor, action="group.invite_tasks", target_type="group", target_id=group.pk, details=result,
                 actor_label=None if actor is not None else "system")
    return result


def _param_group_error() -> ApplicationError:
    message = _("请选择要邀请加入的群（群不存在、已解散或不在你的数据范围内）")
    return ApplicationError(GroupError.GROUP_NOT_FOUND, message, [{"field": "params.group_id", "message": message}])


def segment_action_group_invite_validate(params: dict) -> dict:
    """When the segment action is started: ``group_id`` names an active group (visibility to the actor
    is checked again when it runs, by the handler)."""
    try:
        group_id = int(params.get("group_id"))
    except (TypeError, ValueError):
        raise _param_group_error() from None
    if not GroupChat.objects.filter(pk=group_id, status=GroupChat.Status.ACTIVE).exists():
        raise _param_group_error()
    return {"group_id": group_id}


def segment_action_group_invite(*, action, customers, actor) -> dict:
    """Segment bulk action "group_invite" (params {"group_id"}): invite tasks for the segment's members."""
    group_id = segment_action_group_invite_validate(action.params or {})["group_id"]
    group = selectors.groups_visible_to(actor).filter(pk=group_id).first()
    if group is None:
        raise _param_group_error()
    result = group_invite_tasks_create(actor=actor, group=group, customers=customers)
    return {"group_id": group.pk, "group_name": group.name, "affected": result["created"], **result}


# --- daily health record ------------------------------------------------------------------------

def group_stats_record(day: date) -> int:
    """Write each group's GroupDailyStat for ``day`` (a calendar day in Asia/Shanghai): members and
    client members at the end of the day, joins and leaves during it, the tier mix of its client
    members. Every active group gets a row, plus any group with joins/leaves that day. Idempotent:
    running it again for the same day overwrites that day's rows. Returns the number of rows."""
    start, end = selectors.day_bounds(day)
    at_end = (Q(left_at__isnull=True) | Q(left_at__gte=end)) & (Q(joined_at__isnull=True) | Q(joined_at__lt=end))
    members = GroupMember.objects.filter(at_end)
    stats: dict[int, dict] = defaultdict(lambda: {"members": 0, "clients": 0, "joins": 0, "leaves": 0, "tiers": {}})
    for row in (members.values("group_id").annotate(n=Count("pk"), c=Count("pk", filter=Q(customer__isnull=False)))
                .order_by()):
        stats[row["group_id"]].update(members=row["n"], clients=row["c"])
    for row in (members.filter(customer__isnull=False).values("group_id", "customer__tier__code")
                .annotate(n=Count("pk")).order_by()):
        stats[row["group_id"]]["tiers"][row["customer__tier__code"] or ""] = row["n"]
    for row in (GroupMemberEvent.objects.filter(at__gte=start, at__lt=end).values("group_id", "kind")
                .annotate(n=Count("pk")).order_by()):
        stats[row["group_id"]]["joins" if row["kind"] == GroupMemberEvent.Kind.JOIN else "leaves"] = row["n"]
    active = set(GroupChat.objects.filter(status=GroupChat.Status.ACTIVE).values_list("pk", flat=True))
    existing = set(GroupChat.objects.filter(pk__in=stats.keys()).values_list("pk", flat=True))
    group_ids = active | (existing & {g for g, s in stats.items() if s["joins"] or s["leaves"]})
    rows = [GroupDailyStat(group_id=g, day=day, **stats[g]) for g in sorted(group_ids)]
    for i in range(0, len(rows), 1000):
        GroupDailyStat.objects.bulk_create(rows[i:i + 1000], update_conflicts=True, unique_fields=["group", "day"],
                                           update_fields=["members", "clients", "joins", "leaves", "tiers"])
    return len(rows)
