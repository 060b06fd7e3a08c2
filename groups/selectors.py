"""Reading community groups: what a viewer may see, the audience gap, and group health.

A group is scoped like a customer by its owner (advisor → own groups, branch manager → their branch,
operator/HQ/admin → all). Customers shown inside a group (members, the audience gap) are further cut
to the viewer's own customer scope, so a group never shows a client the viewer could not open.
"""

from datetime import date, datetime, time, timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer, Task
from groups.models import GroupChat, GroupDailyStat, GroupMember, GroupMemberEvent
from segments.models import SegmentMember

INVITE_TASK_SOURCE = "group_invite"


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


def _in_group(group: GroupChat):
    """EXISTS: the outer customer is a current member of ``group``."""
    return Exists(GroupMember.objects.filter(_current_members_q(group), customer_id=OuterRef("pk")))


def _in_audience(group: GroupChat):
    return Exists(SegmentMember.objects.filter(segment_id=group.audience_id, customer_id=OuterRef("pk")))


def invite_task_source_label(group: GroupChat) -> str:
    """How an invite task names its group (``source_label``); also how open invites are found again."""
    return f"社群「{group.name}」#{group.pk}"


def _open_invite(group: GroupChat):
    return Exists(Task.objects.filter(customer_id=OuterRef("pk"), source=INVITE_TASK_SOURCE, status=Task.Status.OPEN,
                                      source_label=invite_task_source_label(group)))


def audience_not_in_group(group: GroupChat, principal):
    """Customers of the audience segment, within ``principal``'s scope, who are not current members."""
    if not group.audience_id:
        return Customer.objects.none()
    return (Customer.objects.visible_to(principal).filter(_in_audience(group)).exclude(_in_group(group))
            .annotate(invite_open=_open_invite(group)))


def members_not_fitting(group: GroupChat, principal):
    """Current client members, within ``principal``'s scope, who are not (or no longer) in the audience."""
    if not group.audience_id:
        return Customer.objects.none()
    return Customer.objects.visible_to(principal).filter(_in_group(group)).exclude(_in_audience(group))


def group_members_for_user(group: GroupChat, user):
    """Current members; ``customer_visible`` says whether the linked client is in the viewer's scope
    (only then are their client details shown)."""
    visible = Customer.objects.visible_to(user).filter(pk=OuterRef("customer_id"))
    return (GroupMember.objects.filter(_current_members_q(group)).select_related("customer", "customer__tier")
            .annotate(customer_visible=Exists(visible)).order_by("type", "joined_at", "pk"))


def groups_with_numbers(qs):
    """Annotate a group queryset with its current client members (the list page)."""
    return qs.annotate(
        clients=Count("members", filter=Q(members__left_at__isnull=True, members__customer__isnull=False), distinct=True),
    )


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


def groups_recent_flow(group_ids, days: int = 7) -> dict[int, dict]:
    """Group → joins and leaves over the last ``days`` days (today included)."""
    today = timezone.localdate()
    totals = {g: {"joins": 0, "leaves": 0} for g in group_ids}
    for (group_id, _day), cell in _daily_flow(group_ids, today - timedelta(days=days - 1), today).items():
        totals[group_id]["joins"] += cell["joins"]
        totals[group_id]["leaves"] += cell["leaves"]
    return totals


def audience_gap_count(group: GroupChat, principal) -> int:
    return audience_not_in_group(group, principal).count() if group.audience_id else 0


# --- health -------------------------------------------------------------------------------------

def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Start and end of a calendar day in the project time zone (Asia/Shanghai)."""
    tz = timezone.get_default_timezone()
    start = timezone.make_aware(datetime.combine(day, time.min), tz)
    return start, start + timedelta(days=1)


def tier_labels() -> dict[str, dict]:
    """Tier code → {label, colour, rank} of the active scheme."""
    from tagging.models import TierDefinition

    return {d.code: {"label": d.label, "colour": d.colour, "rank": d.rank}
            for d in TierDefinition.objects.filter(scheme__active=True).order_by("rank", "code")}


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

    labels = tier_labels()
    tiers = []
    for code, meta in labels.items():
        if mix.get(code):
            tiers.append({"code": code, "label": meta["label"], "colour": meta["colour"], "count": mix[code]})
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
