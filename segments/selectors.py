"""Reading segments: who may see which segment, live previews, stored members, snapshots, diffs, trends.

Membership is stored firm-wide; every read here is cut to the principal's data scope
(``Customer.objects.visible_to``), so a branch manager sees only their branch's part of a firm-wide
segment and an advisor (who has no segments page) would see only their own clients.
"""

from datetime import timedelta

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from core.models import Role
from customers.models import Customer
from segments.models import (
    Segment,
    SegmentAction,
    SegmentExport,
    SegmentMember,
    SegmentRebuild,
    SegmentSizeDaily,
    SegmentSnapshot,
    SegmentSnapshotMember,
)
from segments.rules import rule_compile, rule_validate

NO_TIER = "none"


# --- which segments ------------------------------------------------------------------------

def _may_use_segments(user) -> bool:
    from core.access import may

    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    if getattr(user, "role", None) is None:  # an API client: its own scope decides what it sees of members
        return True
    return may(user, "segments")


def segments_visible_to(user):
    """Segments the user may open (archived ones included; filter ``archived=False`` for lists).

    Roles allowed by the "segments" navigation entry: a branch manager sees the firm-wide segments
    (branch null) and their own branch's; the other allowed roles see all. An API client bound to a
    branch sees firm-wide and that branch's segments. Everyone else: none.
    """
    qs = Segment.objects.all()
    if not _may_use_segments(user):
        return qs.none()
    role = getattr(user, "role", None)
    branch_id = getattr(user, "branch_id", None)
    if role == Role.BRANCH_MANAGER or (role is None and branch_id is not None):
        return qs.filter(Q(branch__isnull=True) | Q(branch_id=branch_id))
    return qs


def segments_with_member_counts(user, *, archived: bool = False):
    """The user's visible segments (archived or not), each with ``visible_count``: its stored members within the
    user's data scope (the list page and ``GET /api/v1/segments/``).

    Firm-wide scope reads ``Segment.member_count``: membership changes only in a rebuild, which stores the size
    in the same transaction, so the list never counts millions of member rows. A narrower scope counts each
    segment's members in that scope with one correlated subquery (no join of every member of every segment)."""
    from core.scoping import scope_for

    scope = scope_for(user)
    segments = segments_visible_to(user).filter(archived=archived).select_related("branch")
    if scope.everything:
        return segments.annotate(visible_count=Coalesce("member_count", 0))
    in_scope = (SegmentMember.objects.filter(segment_id=OuterRef("pk")).filter(scope.customer_q("customer__"))
                .order_by().values("segment_id").annotate(n=Count("*")).values("n"))
    return segments.annotate(visible_count=Coalesce(Subquery(in_scope, output_field=IntegerField()), 0))


def segment_list(user, *, archived: bool = False, limit: int = 200, trend_days: int = 30) -> list[Segment]:
    """The 客群 list: newest first, with the member count in scope, the latest rebuild (``last_rebuild_at`` /
    ``_ms`` / ``_status``) and ``size_trend`` ((day, size) of the last ``trend_days`` days); a fixed number of
    queries whatever the number of segments."""
    latest = SegmentRebuild.objects.filter(segment=OuterRef("pk")).order_by("-started_at", "-pk")
    segments = list(segments_with_member_counts(user, archived=archived)
                    .annotate(last_rebuild_at=Subquery(latest.values("started_at")[:1]),
                              last_rebuild_ms=Subquery(latest.values("duration_ms")[:1]),
                              last_rebuild_status=Subquery(latest.values("status")[:1]))
                    .order_by("-updated_at", "-pk")[:limit])
    trends = segments_size_trends([s.pk for s in segments], days=trend_days, principal=user)
    for segment in segments:
        segment.size_trend = trends.get(segment.pk, [])
    return segments


def segment_get_for_user(user, segment_id) -> Segment:
    segment = segments_visible_to(user).select_related("branch", "created_by").filter(pk=segment_id).first()
    if segment is None:
        raise Http404("客群不存在")
    return segment


def _get_in_visible_segment(user, queryset, pk, message: str):
    """One row of ``queryset`` (a model with a ``segment`` FK) by pk, if its segment is one the user may open."""
    found = queryset.filter(pk=pk, segment__in=segments_visible_to(user)).first()
    if found is None:
        raise Http404(message)
    return found


def export_get_for_user(user, export_id) -> SegmentExport:
    """An export is private to the user who started it (it holds their scope's members)."""
    exports = SegmentExport.objects.select_related("segment", "snapshot").filter(created_by_id=getattr(user, "pk", None))
    return _get_in_visible_segment(user, exports, export_id, "导出不存在")


def action_get_for_user(user, action_id) -> SegmentAction:
    return _get_in_visible_segment(user, SegmentAction.objects.select_related("segment", "created_by"), action_id,
                                   "批量操作不存在")


def segment_snapshots(segment, *, principal):
    """The segment's snapshots, each with ``visible_size``: its members within the principal's scope."""
    from core.scoping import scope_for

    scope = scope_for(principal)
    snapshots = SegmentSnapshot.objects.filter(segment=segment).select_related("created_by")
    if scope.everything:
        return snapshots.annotate(visible_size=F("size"))
    in_scope = (SegmentSnapshotMember.objects.filter(snapshot_id=OuterRef("pk")).filter(scope.customer_q("customer__"))
                .order_by().values("snapshot_id").annotate(n=Count("*")).values("n"))
    return snapshots.annotate(visible_size=Coalesce(Subquery(in_scope, output_field=IntegerField()), 0))


def segment_visible_size(segment, *, principal) -> int:
    """Members of the last rebuild within the principal's scope (the stored count for firm-wide roles)."""
    from core.scoping import scope_for

    if scope_for(principal).everything:
        return segment.member_count or 0
    return segment_members(segment, principal=principal).count()


def segment_last_rebuild_id(segment) -> int:
    """The id of the segment's newest recorded rebuild (0 if none): what a 立即重算 is waited for after."""
    return SegmentRebuild.objects.filter(segment=segment).order_by("-pk").values_list("pk", flat=True).first() or 0


def segment_rebuild_outcome(segment, *, after: int) -> SegmentRebuild | None:
    """The finished rebuild a 立即重算 queued after rebuild #``after`` led to, or None while it is queued or running.
    A request skipped because another rebuild was running ends with that rebuild."""
    newer = SegmentRebuild.objects.filter(segment=segment, pk__gt=after).exclude(status=SegmentRebuild.Status.RUNNING)
    finished = newer.exclude(status=SegmentRebuild.Status.SKIPPED).order_by("-pk").first()
    if finished is not None:
        return finished
    skipped = newer.order_by("pk").first()
    if skipped is None:
        return None
    return (SegmentRebuild.objects.filter(segment=segment, finished_at__gte=skipped.started_at,
                                          status__in=[SegmentRebuild.Status.DONE, SegmentRebuild.Status.FAILED])
            .order_by("-pk").first())


def segment_rebuilds(segment, limit: int = 20) -> list[SegmentRebuild]:
    """Rebuild history; its sizes and joins/leaves are the firm's (pages show them to firm-wide roles only)."""
    return list(SegmentRebuild.objects.filter(segment=segment)[:limit])


def segment_exports_for_user(user, segment, limit: int = 20) -> list[SegmentExport]:
    return list(SegmentExport.objects.filter(segment=segment, created_by_id=getattr(user, "pk", None))
                .select_related("snapshot")[:limit])


def segment_actions(segment, limit: int = 20) -> list[SegmentAction]:
    return list(SegmentAction.objects.filter(segment=segment).select_related("created_by")[:limit])


def segments_using(segment, *, include_archived: bool = False) -> list[Segment]:
    """Segments whose rule nests ``segment`` (a ``segment`` node naming it)."""
    from segments.rules import rule_segment_refs

    qs = Segment.objects.exclude(pk=segment.pk)
    if not include_archived:
        qs = qs.filter(archived=False)
    # rules are small and segments few: a JSON containment pre-filter would need a path per depth
    return [s for s in qs.only("pk", "name", "rule", "archived")
            if any(ref == segment.pk for _, ref in rule_segment_refs(s.rule))]


# --- live rule results -----------------------------------------------------------------------

def rule_check(rule, *, principal) -> None:
    """Validate the tree for ``principal``: RuleError with the path of the first bad node, including a nested
    segment the principal may not open (reported as not existing)."""
    from segments.rules import RuleError, rule_segment_refs

    rule_validate(rule)
    refs = rule_segment_refs(rule)
    if not refs:
        return
    visible = set(segments_visible_to(principal).filter(pk__in=[ref for _path, ref in refs]).values_list("pk", flat=True))
    for path, ref in refs:
        if ref not in visible:
            raise RuleError(f"{path}.segment", f"客群 {ref} 不存在")


def rule_preview(rule, *, principal, sample_size: int = 10, breakdowns: bool = True, now=None) -> dict:
    """What the rule matches now within the principal's scope: the count (one query), a sample
    (largest assets first) and breakdowns by tier and branch (each one GROUP BY query). The builder's
    live preview and ``POST /api/v1/segments/preview/`` (count only) both read this."""
    rule_check(rule, principal=principal)
    matched = Customer.objects.visible_to(principal).filter(rule_compile(rule, now=now or timezone.now()))
    count = matched.count()
    sample = list(matched.select_related("branch", "advisor").order_by("-total_assets", "pk")[:sample_size]) \
        if count and sample_size else []
    if not (count and breakdowns):
        return {"count": count, "sample": sample, "by_tier": [], "by_branch": []}
    from tagging.tiers import tier_definitions

    definitions = tier_definitions()
    by_tier = [{"code": row["tier__code"] or NO_TIER,
                "label": definitions[row["tier__code"]].label if row["tier__code"] in definitions
                else (row["tier__code"] or "未分层"),
                "count": row["n"]}
               for row in matched.order_by().values("tier__code").annotate(n=Count("pk"))]
    by_tier.sort(key=lambda r: (definitions[r["code"]].rank if r["code"] in definitions else 10**6, r["code"]))
    by_branch = [{"code": row["branch__code"], "name": row["branch__name"], "count": row["n"]}
                 for row in matched.order_by().values("branch__code", "branch__name").annotate(n=Count("pk"))
                 .order_by("-n", "branch__code")]
    return {"count": count, "sample": sample, "by_tier": by_tier, "by_branch": by_branch}


# --- stored members ----------------------------------------------------------------------------

def segment_members(segment, *, principal):
    """The segment's stored membership (as of its last rebuild) within the principal's scope."""
    return Customer.objects.visible_to(principal).filter(
        Exists(SegmentMember.objects.filter(segment_id=segment.pk, customer_id=OuterRef("pk"))))


def snapshot_members(snapshot, *, principal):
    return Customer.objects.visible_to(principal).filter(
        Exists(SegmentSnapshotMember.objects.filter(snapshot_id=snapshot.pk, customer_id=OuterRef("pk"))))


def _side_q(segment, side, now) -> Q:
    if side is None:
        return rule_compile(segment.rule, now=now)
    return Q(Exists(SegmentSnapshotMember.objects.filter(snapshot_id=side.pk, customer_id=OuterRef("pk"))))


def segment_diff(*, principal, segment, left=None, right=None, now=None) -> dict:
    """Who joined / left between two member lists: ``left`` and ``right`` are SegmentSnapshots or None
    for the segment's live rule (evaluated now). joined = in right not in left; left = in left not in
    right. Both within the principal's scope."""
    now = now or timezone.now()
    if left is None and right is None:
        empty = Customer.objects.none()
        return {"joined": empty, "left": empty, "joined_count": 0, "left_count": 0}
    base = Customer.objects.visible_to(principal)
    in_left, in_right = _side_q(segment, left, now), _side_q(segment, right, now)
    joined = base.filter(in_right & ~in_left)
    gone = base.filter(in_left & ~in_right)
    return {"joined": joined, "left": gone, "joined_count": joined.count(), "left_count": gone.count()}


def segments_size_trends(segment_ids, days: int = 90, *, principal) -> dict[int, list[tuple]]:
    """{segment id: [(day, size), …]} of the last ``days`` days (Asia/Shanghai dates), oldest first, counted within
    the principal's scope: the firm's sizes for firm-wide roles, the branch's for a branch (0 on a day the firm
    was recorded and the branch had nobody), nothing for narrower scopes; one query."""
    from core.scoping import scope_for

    scope = scope_for(principal)
    since = timezone.localdate() - timedelta(days=days - 1)
    rows = SegmentSizeDaily.objects.filter(segment_id__in=list(segment_ids), day__gte=since)
    if scope.everything:
        rows = rows.filter(branch__isnull=True).values_list("segment_id", "day", "size")
    elif scope.branch_id is not None and scope.advisor_id is None:
        branch_size = Subquery(SegmentSizeDaily.objects.filter(segment_id=OuterRef("segment_id"), day=OuterRef("day"),
                                                               branch_id=scope.branch_id).values("size")[:1])
        rows = (rows.filter(branch__isnull=True).annotate(scoped=Coalesce(branch_size, 0))
                .values_list("segment_id", "day", "scoped"))
    else:
        return {}
    trends: dict[int, list[tuple]] = {}
    for segment_id, day, size in rows.order_by("segment_id", "day"):
        trends.setdefault(segment_id, []).append((day, size))
    return trends


def segment_size_trend(segment, days: int = 90, *, principal) -> list[tuple]:
    """(day, size) of the last ``days`` days (Asia/Shanghai dates), oldest first, within the principal's scope."""
    return segments_size_trends([segment.pk], days=days, principal=principal).get(segment.pk, [])
