"""Reading community groups: what a viewer may see, the audience gap, and group health.

A group is scoped like a customer by its owner (advisor → own groups, branch manager → their branch,
operator/HQ/admin → all). Customers shown inside a group (members, the audience gap) are further cut
to the viewer's own customer scope, so a group never shows a client the viewer could not open.
"""

from datetime import date, datetime, time, timedelta

from django.db.models import Count, Exists, F, Func, IntegerField, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer, Task
from groups.models import GroupChat, GroupDailyStat, GroupMember, GroupMemberEvent
from segments.models import SegmentMember
from tagging.tiers import tier_definitions

INVITE_TASK_SOURCE = Task.Source.GROUP_INVITE


def groups_visible_to(user):
    return GroupChat.objects.visible_to(user)


def group_get_for_user(*, user, group_id: int) -> GroupChat:
    """The group if ``user`` may see it; 404 otherwise, so existence never leaks."""
    group = groups_visible_to(user).select_related("advisor", "branch", "audience").filter(pk=group_id).first()
    if group is None:
        raise Http404("group not visible")
    return group


def _current_members_q(group: GroupChat, prefix: str = "") -> Q:
    return Q(**{f"{prefix}group": group, f"{prefix}left_at__isnull": True})


def in_group_exists(group_id):
    """EXISTS: the outer customer is a current member of the group ``group_id`` (an id or an OuterRef)."""
    return Exists(GroupMember.objects.filter(group_id=group_id, left_at__isnull=True, customer_id=OuterRef("pk")))


def _in_audience(segment_id):
    """EXISTS: the outer customer is in the segment ``segment_id`` (an id or an OuterRef)."""
    return Exists(SegmentMember.objects.filter(segment_id=segment_id, customer_id=OuterRef("pk")))


def _gap(principal, group_id, segment_id):
    """Customers of the audience, within ``principal``'s scope, who are not current members: the one
    definition behind the detail page's gap list and the list page's 待邀请 count."""
    return Customer.objects.visible_to(principal).filter(_in_audience(segment_id)).exclude(in_group_exists(group_id))


def invite_task_source_label(group: GroupChat) -> str:
    """How an invite task names its group (``source_label``). Open invites are found again by the
    ``」#<id>`` ending, so renaming the group does not lose them (Task has no group reference)."""
    return f"社群「{group.name}」#{group.pk}"


def open_invite_exists(group_id: int):
    """EXISTS: the outer customer has an open invite task for the group ``group_id``."""
    return Exists(Task.objects.filter(customer_id=OuterRef("pk"), source=INVITE_TASK_SOURCE, status=Task.Status.OPEN,
                                      source_label__endswith=f"」#{group_id}"))


def audience_not_in_group(group: GroupChat, principal):
    """Customers of the audience segment, within ``principal``'s scope, who are not current members;
    ``invite_open`` says whether one has an open invite task for this group."""
    if not group.audience_id:
        return Customer.objects.none()
    return _gap(principal, group.pk, group.audience_id).annotate(invite_open=open_invite_exists(group.pk))


def invite_candidates(group: GroupChat, principal, customer_ids=None):
    """Whom 邀请 on the detail page may invite: the whole gap (``customer_ids`` None), or the given ids
    that are in it (any other id is ignored)."""
    gap = audience_not_in_group(group, principal)
    return gap if customer_ids is None else gap.filter(pk__in=customer_ids)


def members_not_fitting(group: GroupChat, principal):
    """Current client members, within ``principal``'s scope, who are not (or no longer) in the audience."""
    if not group.audience_id:
        return Customer.objects.none()
    return (Customer.objects.visible_to(principal).filter(in_group_exists(group.pk))
            .exclude(_in_audience(group.audience_id)))


def group_audience_compare(group: GroupChat, user, *, limit: int = 100) -> dict:
    """The detail page's 目标客群对照 within ``user``'s scope: the first ``limit`` customers of the audience
    not in the group (``gap``) and of the client members not in the audience (``not_fitting``), each with
    its tier (``tier_code``/``tier_label``/``tier_colour``), and the totals of both."""
    from tagging.tiers import annotate_tier

    compare = {"gap": [], "gap_total": 0, "not_fitting": [], "not_fitting_total": 0}
    if not group.audience_id:
        return compare
    for key, qs in (("gap", audience_not_in_group(group, user)), ("not_fitting", members_not_fitting(group, user))):
        rows = list(annotate_tier(qs.select_related("advisor")).order_by("name", "pk")[:limit])
        compare[key] = rows
        compare[f"{key}_total"] = len(rows) if len(rows) < limit else qs.count()
    return compare


def group_members_for_user(group: GroupChat, user):
    """Current members; ``customer_visible`` says whether the linked client is in the viewer's scope
    (only then are their client details shown). The client comes with ``tier_code``/``tier_label``/
    ``tier_colour`` (tagging.tiers.annotate_tier): two queries however many members."""
    from tagging.tiers import annotate_tier

    visible = Customer.objects.visible_to(user).filter(pk=OuterRef("customer_id"))
    return (GroupMember.objects.filter(_current_members_q(group))
            .prefetch_related(Prefetch("customer", queryset=annotate_tier(Customer.objects.all())))
            .annotate(customer_visible=Exists(visible)).order_by("type", "joined_at", "pk"))


def _count(qs):
    """A correlated ``SELECT COUNT(*)`` of ``qs`` as an integer expression (for annotate)."""
    return Coalesce(Subquery(qs.order_by().values(n=Func(F("pk"), function="COUNT"))), 0,
                    output_field=IntegerField())


def group_owners_for(user):
    """Advisors owning a group ``user`` may see (the list's 群主 filter)."""
    from core.models import User

    owned = groups_visible_to(user).filter(advisor__isnull=False).values("advisor_id")
    return User.objects.filter(pk__in=owned).order_by("display_name", "username")


def group_list_for_user(user, *, purpose: str = "", owner_id: int | None = None):
    """The list page's groups, each with its numbers in the same query: ``clients`` (current client
    members) and ``audience_gap`` (audience customers in ``user``'s scope not in the group; 0 without an
    audience). Joins/leaves come from ``groups_attach_recent_flow`` for the page shown."""
    qs = groups_visible_to(user).select_related("advisor", "audience")
    if purpose:
        qs = qs.filter(purpose=purpose)
    if owner_id:
        qs = qs.filter(advisor_id=owner_id)
    clients = GroupMember.objects.filter(group_id=OuterRef("pk"), left_at__isnull=True, customer__isnull=False)
    gap = _gap(user, OuterRef(OuterRef("pk")), OuterRef(OuterRef("audience_id")))
    return qs.annotate(clients=_count(clients), audience_gap=_count(gap)).order_by("status", "name", "pk")


def _daily_flow(group_ids, first: date, today: date) -> dict[tuple[int, date], dict]:
    """(group, day) → joins and leaves from first to today: the daily record where there is one
    (not for today), the join/leave events otherwise — the same numbers as the health chart."""
    flow: dict[tuple[int, date], dict] = {}
    start, _end = day_bounds(first)
    tz = timezone.get_default_timezone()
    for row in (GroupMemberEvent.objects.filter(group_id__in=group_ids, at__gte=start)
                .annotate(day=TruncDate("at", tzinfo=tz)).values("group_id", "day", "kind")
                .annotate(n=Count("pk")).order_by()):
        cell = flow.setdefault((row["group_id"], row["day"]), {"joins": 0, "leaves": 0})
        cell["joins" if row["kind"] == GroupMemberEvent.Kind.JOIN else "leaves"] = row["n"]
    for stat in GroupDailyStat.objects.filter(group_id__in=group_ids, day__gte=first, day__lt=today):
        flow[(stat.group_id, stat.day)] = {"joins": stat.joins, "leaves": stat.leaves}
    return flow


def groups_attach_recent_flow(groups, days: int = 7) -> list[GroupChat]:
    """Sets ``recent_joins`` and ``recent_leaves`` (last ``days`` days, today included) on each group;
    two queries for all of them."""
    groups = list(groups)
    today = timezone.localdate()
    totals = {g.pk: {"joins": 0, "leaves": 0} for g in groups}
    for (group_id, _day), cell in _daily_flow(list(totals), today - timedelta(days=days - 1), today).items():
        totals[group_id]["joins"] += cell["joins"]
        totals[group_id]["leaves"] += cell["leaves"]
    for g in groups:
        g.recent_joins, g.recent_leaves = totals[g.pk]["joins"], totals[g.pk]["leaves"]
    return groups


# --- health -------------------------------------------------------------------------------------

def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Start and end of a calendar day in the project time zone (Asia/Shanghai)."""
    tz = timezone.get_default_timezone()
    start = timezone.make_aware(datetime.combine(day, time.min), tz)
    return start, start + timedelta(days=1)


def live_tier_mix(group: GroupChat) -> dict[str, int]:
    """Tier code → current client members in it ("" for clients not tiered yet)."""
    rows = (GroupMember.objects.filter(_current_members_q(group), customer__isnull=False)
            .values("customer__tier__code").annotate(n=Count("pk")).order_by())
    return {r["customer__tier__code"] or "": r["n"] for r in rows}


def group_health(group: GroupChat, days: int = 30) -> dict:
    """Per day over the last ``days`` days (today included): members, client members, joins and leaves,
    from the daily record (GroupDailyStat) and, for today and any day not recorded, from the live
    members and the join/leave events; and today's share of client members per tier."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    stats = {s.day: s for s in GroupDailyStat.objects.filter(group=group, day__gte=first, day__lt=today)}
    flow = _daily_flow([group.pk], first, today)
    members_now = GroupMember.objects.filter(_current_members_q(group)).count()
    mix = live_tier_mix(group)
    clients_now = sum(mix.values())

    rows = []
    for i in range(days):
        day = first + timedelta(days=i)
        stat = stats.get(day)
        if day == today:
            row = {"members": members_now, "clients": clients_now}
        elif stat is not None:
            row = {"members": stat.members, "clients": stat.clients}
        else:
            row = {"members": None, "clients": None}
        row.update(flow.get((group.pk, day), {"joins": 0, "leaves": 0}))
        rows.append({"day": day.isoformat(), **row})

    labels = tier_definitions()
    tiers = []
    for code, definition in labels.items():
        if mix.get(code):
            tiers.append({"code": code, "label": definition.label, "colour": definition.colour, "count": mix[code]})
    for code, n in sorted(mix.items()):
        if code not in labels and n:
            tiers.append({"code": code, "label": code or _("未分层"), "colour": "secondary", "count": n})
    for t in tiers:
        t["share"] = round(100 * t["count"] / clients_now, 1) if clients_now else 0
    week = rows[-7:]
    return {
        "days": rows,
        "members": members_now,
        "clients": clients_now,
        "client_share": round(100 * clients_now / members_now, 1) if members_now else 0,
        "joins_7d": sum(r["joins"] for r in week),
        "leaves_7d": sum(r["leaves"] for r in week),
        "tiers": tiers,
    }
