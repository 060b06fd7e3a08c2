"""Writing segments: create / update / archive, rebuilds of stored membership, snapshots, and the
starts of exports (segments/exports.py) and bulk actions (below).

Rebuilds change membership only by diffs computed in SQL, one statement per rebuild: joiners
(``rule EXCEPT current members``) are inserted, leavers deleted with RETURNING, and both are written to
SegmentMemberChange with the rebuild. One rebuild per segment at a time: a transaction-level
PostgreSQL advisory lock keyed by the segment; a second concurrent rebuild records "skipped".
"""

import json
import logging
import time
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.events import SegmentMembershipChanged, emit
from core.models import Role
from core.services import audit_record
from segments.models import Segment, SegmentAction, SegmentExport, SegmentRebuild, SegmentSizeDaily, SegmentSnapshot
from segments.rules import RuleError, rule_segment_refs, rule_sql, rule_validate

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock(int4, int4): (this class id, segment id). The two-key space does not
# overlap the one-key (bigint) space that tagging/tiers.py and integrations use.
REBUILD_LOCK_CLASS = 0x5E6  # "SEG"
NAME_MAX = 100
DESCRIPTION_MAX = 500


def _forbidden(message="没有客群功能的权限"):
    return ApplicationError("forbidden", message, status_code=403)


def _check_actor(actor) -> None:
    from segments.selectors import _may_use_segments

    if not _may_use_segments(actor) or getattr(actor, "role", None) is None:
        raise _forbidden()


def _check_may_edit(actor, segment: Segment) -> None:
    """Branch managers edit only their branch's segments; firm-wide ones are read-only for them."""
    from segments.selectors import segment_get_for_user

    _check_actor(actor)
    segment_get_for_user(actor, segment.pk)  # 404 outside
    if actor.role == Role.BRANCH_MANAGER and segment.branch_id != actor.branch_id:
        raise _forbidden("全公司客群只能由总部或运营人员修改")


def _clean_name(name) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ApplicationError("invalid", "请填写客群名称", [{"field": "name", "message": "请填写客群名称"}])
    if len(name) > NAME_MAX:
        raise ApplicationError("invalid", f"名称不能超过 {NAME_MAX} 字",
                               [{"field": "name", "message": f"不能超过 {NAME_MAX} 字"}])
    return name


def _clean_description(description) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise ApplicationError("invalid", f"说明不能超过 {DESCRIPTION_MAX} 字",
                               [{"field": "description", "message": f"不能超过 {DESCRIPTION_MAX} 字"}])
    return description


def _rule_check(rule, *, actor, segment_id: int | None) -> None:
    """Validate the tree (segments.selectors.rule_check: nested segments must be visible to the actor); they
    must not lead back to ``segment_id`` either (a cycle), reported at the path of the offending node."""
    from segments.selectors import rule_check

    rule_check(rule, principal=actor)
    refs = rule_segment_refs(rule)
    if not refs or segment_id is None:
        return
    stored = {pk: (name, stored_rule) for pk, name, stored_rule in Segment.objects.values_list("pk", "name", "rule")}
    for path, ref in refs:
        # depth-first through the stored rules of the nested segments
        stack, seen = [(ref, [ref])], set()
        while stack:
            current, trail = stack.pop()
            if current == segment_id:
                chain = " → ".join(stored.get(pk, (str(pk),))[0] for pk in [segment_id, *trail])
                raise RuleError(f"{path}.segment", f"客群嵌套形成循环：{chain}")
            if current in seen:
                continue
            seen.add(current)
            for _, nested in rule_segment_refs(stored.get(current, ("", {}))[1] or {}):
                stack.append((nested, [*trail, nested]))


def _enqueue_rebuild(segment: Segment, requested_by: str) -> None:
    from segments.tasks import rebuild as rebuild_task

    segment_id = segment.pk
    transaction.on_commit(lambda: rebuild_task.delay(segment_id, requested_by))


# --- create / update / archive ---------------------------------------------------------------

@transaction.atomic
def segment_create(*, actor, name, rule, description="", branch=None) -> Segment:
    """A saved dynamic segment; its first rebuild is queued on commit. A branch manager's segment
    belongs to their branch whatever ``branch`` says."""
    _check_actor(actor)
    name, description = _clean_name(name), _clean_description(description)
    _rule_check(rule, actor=actor, segment_id=None)
    if actor.role == Role.BRANCH_MANAGER:
        branch = actor.branch
    segment = Segment.objects.create(name=name, description=description, rule=rule, branch=branch, created_by=actor)
    audit_record(actor=actor, action="segment.create", target_type="segment", target_id=segment.pk,
                 details={"name": name, "branch": branch.code if branch else None, "rule": rule})
    _enqueue_rebuild(segment, actor.username)
    return segment


@transaction.atomic
def segment_update(*, actor, segment, name=None, rule=None, description=None) -> Segment:
    """Change name / description / rule (None = leave as is); a new rule queues a rebuild."""
    _check_may_edit(actor, segment)
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    if segment.archived:
        raise ApplicationError("segment_archived", "已归档的客群不能修改")
    changed = {}
    if name is not None:
        segment.name = changed["name"] = _clean_name(name)
    if description is not None:
        segment.description = changed["description"] = _clean_description(description)
    rule_changed = rule is not None and rule != segment.rule
    if rule_changed:
        _rule_check(rule, actor=actor, segment_id=segment.pk)
        segment.rule = changed["rule"] = rule
    segment.updated_at = timezone.now()
    segment.save(update_fields=["name", "description", "rule", "updated_at"])
    audit_record(actor=actor, action="segment.update", target_type="segment", target_id=segment.pk, details=changed)
    if rule_changed:
        _enqueue_rebuild(segment, actor.username)
    return segment


@transaction.atomic
def segment_archive(*, actor, segment) -> Segment:
    """Archive (membership and snapshots are kept); refused while an active segment nests it."""
    from segments.selectors import segments_using

    _check_may_edit(actor, segment)
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    users = segments_using(segment)
    if users:
        names = "、".join(s.name for s in users[:5])
        raise ApplicationError("segment_in_use", f"客群被其他客群引用，不能归档：{names}",
                               [{"field": "segment", "message": names, "segments": [s.pk for s in users]}])
    segment.archived = True
    segment.updated_at = timezone.now()
    segment.save(update_fields=["archived", "updated_at"])
    audit_record(actor=actor, action="segment.archive", target_type="segment", target_id=segment.pk,
                 details={"name": segment.name})
    return segment


# --- rebuilds -----------------------------------------------------------------------------------

def _try_lock(segment_id: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [REBUILD_LOCK_CLASS, segment_id])
        return cur.fetchone()[0]


def _apply_diff(*, segment: Segment, rebuild: SegmentRebuild, now) -> tuple[int, int, int]:
    """One statement: insert joiners, delete leavers, record both; returns (added, removed, size)."""
    matched_sql, matched_params = rule_sql(segment.rule, now=now)
    with connection.cursor() as cur:
        cur.execute(f"""
            WITH matched AS ({matched_sql}),
            joined AS (
                INSERT INTO segments_segmentmember (segment_id, customer_id, since)
                SELECT %s, j.id, %s FROM (
                    SELECT id FROM matched
                    EXCEPT
                    SELECT customer_id FROM segments_segmentmember WHERE segment_id = %s
                ) j
                RETURNING customer_id
            ),
            gone AS (
                DELETE FROM segments_segmentmember sm
                WHERE sm.segment_id = %s AND NOT EXISTS (SELECT 1 FROM matched m WHERE m.id = sm.customer_id)
                RETURNING sm.customer_id
            ),
            recorded AS (
                INSERT INTO segments_segmentmemberchange (segment_id, customer_id, action, rebuild_id, at)
                SELECT %s, customer_id, 'joined', %s, %s FROM joined
                UNION ALL
                SELECT %s, customer_id, 'left', %s, %s FROM gone
            )
            SELECT (SELECT count(*) FROM joined), (SELECT count(*) FROM gone)
        """, [*matched_params, segment.pk, now, segment.pk, segment.pk,
              segment.pk, rebuild.pk, now, segment.pk, rebuild.pk, now])
        added, removed = cur.fetchone()
        cur.execute("SELECT count(*) FROM segments_segmentmember WHERE segment_id = %s", [segment.pk])
        return added, removed, cur.fetchone()[0]


def _sizes_record(*, segment_id: int, day, size: int) -> None:
    """Today's size of the firm and of each branch with members (the trend a branch manager sees is theirs)."""
    SegmentSizeDaily.objects.update_or_create(segment_id=segment_id, day=day, branch=None, defaults={"size": size})
    with connection.cursor() as cur:
        cur.execute("DELETE FROM segments_segmentsizedaily WHERE segment_id = %s AND day = %s AND branch_id IS NOT NULL",
                    [segment_id, day])
        cur.execute("""
            INSERT INTO segments_segmentsizedaily (segment_id, day, branch_id, size)
            SELECT %s, %s, c.branch_id, count(*) FROM segments_segmentmember m
            JOIN customers_customer c ON c.id = m.customer_id
            WHERE m.segment_id = %s AND c.branch_id IS NOT NULL GROUP BY c.branch_id
        """, [segment_id, day, segment_id])


def segment_rebuild(*, segment_id, requested_by="") -> SegmentRebuild:
    """Bring the stored membership up to the rule now. Never overlaps another rebuild of the same
    segment: if one is running, a "skipped" rebuild is recorded and returned at once. A failure
    rolls back the membership change and is recorded as a "failed" rebuild with the error."""
    started = time.monotonic()
    try:
        with transaction.atomic():
            segment = Segment.objects.get(pk=segment_id)
            if not _try_lock(segment.pk):
                return SegmentRebuild.objects.create(segment=segment, status=SegmentRebuild.Status.SKIPPED,
                                                     requested_by=requested_by[:150], finished_at=timezone.now(),
                                                     size=segment.member_count or 0, duration_ms=0)
            now = timezone.now()
            rebuild = SegmentRebuild.objects.create(segment=segment, requested_by=requested_by[:150])
            rule_validate(segment.rule)
            added, removed, size = _apply_diff(segment=segment, rebuild=rebuild, now=now)
            finished = timezone.now()
            duration_ms = int((time.monotonic() - started) * 1000)
            SegmentRebuild.objects.filter(pk=rebuild.pk).update(
                status=SegmentRebuild.Status.DONE, added=added, removed=removed, size=size, duration_ms=duration_ms,
                finished_at=finished)
            Segment.objects.filter(pk=segment.pk).update(member_count=size, rebuilt_at=finished)
            _sizes_record(segment_id=segment.pk, day=timezone.localdate(finished), size=size)
            if added or removed:  # who moved is in SegmentMemberChange (rebuild_id); the event names the rebuild
                emit(SegmentMembershipChanged(segment_id=segment.pk, rebuild_id=rebuild.pk))
            rebuild.refresh_from_db()
            return rebuild
    except Segment.DoesNotExist:
        raise
    except Exception as exc:
        logger.exception("segment %s rebuild failed", segment_id)
        return SegmentRebuild.objects.create(segment_id=segment_id, status=SegmentRebuild.Status.FAILED,
                                             requested_by=requested_by[:150], error=str(exc)[:4000],
                                             finished_at=timezone.now(),
                                             duration_ms=int((time.monotonic() - started) * 1000))


@transaction.atomic
def segment_rebuild_request(*, actor, segment) -> None:
    """立即重算: queue a rebuild of a segment the actor may open (audited); an archived one is no longer rebuilt."""
    from segments.selectors import segment_get_for_user

    _check_actor(actor)
    segment = segment_get_for_user(actor, segment.pk)
    if segment.archived:
        raise ApplicationError("segment_archived", "已归档的客群不再重算")
    audit_record(actor=actor, action="segment.rebuild", target_type="segment", target_id=segment.pk,
                 details={"name": segment.name})
    _enqueue_rebuild(segment, actor.get_username())


def segments_rebuild_order(segments=None) -> list[int]:
    """Ids of active segments, each nested segment before the segments that use it (topological);
    a cycle (refused on save, so only possible through direct DB edits) is broken arbitrarily."""
    if segments is None:
        segments = Segment.objects.filter(archived=False)
    rules = dict(segments.values_list("pk", "rule"))
    order, state = [], {}

    def visit(pk):
        if state.get(pk) is not None:
            return  # done, or on the stack (a cycle)
        state[pk] = "visiting"
        for _, ref in rule_segment_refs(rules[pk]):
            if ref in rules:
                visit(ref)
        state[pk] = "done"
        order.append(pk)

    for pk in sorted(rules):
        visit(pk)
    return order


def segments_rebuild_all(requested_by: str = "schedule") -> dict:
    """Rebuild every active segment, nested ones first; returns {segment_id: status}."""
    results = {}
    for segment_id in segments_rebuild_order():
        try:
            results[segment_id] = segment_rebuild(segment_id=segment_id, requested_by=requested_by).status
        except Segment.DoesNotExist:
            continue
    return results


# --- snapshots ----------------------------------------------------------------------------------

@transaction.atomic
def snapshot_create(*, actor, segment, name) -> SegmentSnapshot:
    """Freeze who matches the segment's rule now (firm-wide, like membership; read scoped)."""
    from segments.selectors import segment_get_for_user

    _check_actor(actor)
    segment = segment_get_for_user(actor, segment.pk)
    name = _clean_name(name)
    rule_validate(segment.rule)
    now = timezone.now()
    snapshot = SegmentSnapshot.objects.create(segment=segment, name=name, rule=segment.rule, created_by=actor)
    matched_sql, matched_params = rule_sql(segment.rule, now=now)
    with connection.cursor() as cur:
        cur.execute(f"""
            INSERT INTO segments_segmentsnapshotmember (snapshot_id, customer_id)
            SELECT %s, m.id FROM ({matched_sql}) m
        """, [snapshot.pk, *matched_params])
        size = cur.rowcount
    SegmentSnapshot.objects.filter(pk=snapshot.pk).update(size=size)
    snapshot.size = size
    audit_record(actor=actor, action="segment.snapshot", target_type="segment", target_id=segment.pk,
                 details={"snapshot": snapshot.pk, "name": name, "size": size})
    return snapshot


# --- exports ------------------------------------------------------------------------------------

@transaction.atomic
def export_start(*, actor, segment, snapshot=None, format="csv") -> SegmentExport:  # noqa: A002 - the contract
    """Queue an export of the members (or of one snapshot) within the actor's scope; personal data
    masked unless the actor's scope allows it. Runs in the Celery task ``segments.export_run``."""
    from core.scoping import scope_for
    from segments.selectors import segment_get_for_user, segment_members, snapshot_members

    _check_actor(actor)
    segment = segment_get_for_user(actor, segment.pk)
    if format not in SegmentExport.Format.values:
        raise ApplicationError("invalid", "导出格式应为 CSV 或 XLSX", [{"field": "format", "message": "应为 csv 或 xlsx"}])
    if snapshot is not None and snapshot.segment_id != segment.pk:
        raise ApplicationError("invalid", "快照不属于该客群", [{"field": "snapshot", "message": "快照不属于该客群"}])
    members = snapshot_members(snapshot, principal=actor) if snapshot else segment_members(segment, principal=actor)
    export = SegmentExport.objects.create(segment=segment, snapshot=snapshot, format=format, created_by=actor,
                                          masked=not scope_for(actor).personal_data, total=members.count())
    from segments.tasks import export_run

    export_id = export.pk
    transaction.on_commit(lambda: export_run.delay(export_id))
    return export


def export_file_for_user(user, export_id):
    """The download of a finished export as a FileResponse (attachment) for the user who started it;
    Http404 for anyone else, while unfinished or when the file is gone. Audits the download
    ("segment.export_download"). The response carries the SegmentExport as ``response.export``."""
    from django.http import Http404

    from core.exports import ExportAudit, file_response
    from segments.exports import export_filename
    from segments.selectors import export_get_for_user

    export = export_get_for_user(user, export_id)
    if export.status != SegmentExport.Status.DONE or not export.file or not export.file.storage.exists(export.file.name):
        raise Http404("导出文件尚未生成")
    response = file_response(
        file=export.file.open("rb"), filename=export_filename(export),
        audit=ExportAudit(actor=user, action="segment.export_download", target_type="segment",
                          target_id=export.segment_id,
                          details={"export": export.pk, "count": export.written, "masked": export.masked,
                                   "format": export.format}))
    response.export = export
    return response


# --- bulk actions -------------------------------------------------------------------------------

BUILTIN_ACTIONS = {SegmentAction.Kind.TAG_ADD, SegmentAction.Kind.TAG_REMOVE, SegmentAction.Kind.TASKS}
ACTION_LABELS = dict(SegmentAction.Kind.choices)


def _param_error(field: str, message: str) -> ApplicationError:
    return ApplicationError("invalid", message, [{"field": f"params.{field}", "message": message}])


def _clean_action_params(kind: str, params) -> dict:
    from segments.actions import SEGMENT_ACTION_VALIDATORS
    from tagging.models import Tag

    if not isinstance(params, dict):
        raise ApplicationError("invalid", "参数应为对象", [{"field": "params", "message": "应为对象"}])
    if kind in (SegmentAction.Kind.TAG_ADD, SegmentAction.Kind.TAG_REMOVE):
        code = params.get("tag")
        if not isinstance(code, str) or not code:
            raise _param_error("tag", "请选择标签")
        if not Tag.objects.filter(code=code, active=True).exists():
            raise _param_error("tag", f"标签 {code} 不存在或已停用")
        return {"tag": code}
    if kind == SegmentAction.Kind.TASKS:
        title = params.get("title")
        if not isinstance(title, str) or not title.strip() or len(title.strip()) > 200:
            raise _param_error("title", "请填写任务标题（不超过 200 字）")
        due_days = params.get("due_days")
        if isinstance(due_days, str) and due_days.strip().isdigit():
            due_days = int(due_days)
        if not isinstance(due_days, int) or isinstance(due_days, bool) or not 1 <= due_days <= 30:
            raise _param_error("due_days", "截止天数应为 1–30 的整数")
        return {"title": title.strip(), "due_days": due_days}
    validator = SEGMENT_ACTION_VALIDATORS.get(kind)
    return validator(params) if validator else params


@transaction.atomic
def action_start(*, actor, segment, kind, params) -> SegmentAction:
    """Validate the parameters (nothing is stored on error) and queue the action on the segment's
    members within the actor's scope (Celery task ``segments.action_run``)."""
    from segments.actions import SEGMENT_ACTION_HANDLERS
    from segments.selectors import segment_get_for_user

    _check_actor(actor)
    segment = segment_get_for_user(actor, segment.pk)
    if kind not in BUILTIN_ACTIONS and kind not in SEGMENT_ACTION_HANDLERS:
        label = ACTION_LABELS.get(kind, kind)
        raise ApplicationError("action_unavailable", f"批量动作「{label}」尚未启用，请联系管理员",
                               [{"field": "kind", "message": f"不支持的动作 {kind}"}])
    params = _clean_action_params(kind, params)
    action = SegmentAction.objects.create(segment=segment, kind=kind, params=params, created_by=actor)
    audit_record(actor=actor, action="segment.action", target_type="segment", target_id=segment.pk,
                 details={"action": action.pk, "kind": kind, "params": params})
    from segments.tasks import action_run

    action_id = action.pk
    transaction.on_commit(lambda: action_run.delay(action_id))
    return action


def _action_tags(action: SegmentAction, customers, *, add: bool) -> dict:
    from tagging.models import Tag
    from tagging.rule_tags import customer_tags_bulk_set

    tag = Tag.objects.get(code=action.params["tag"])
    members = customers.count()
    if not members:
        return {"members": 0, "changed": 0, "tag_name": tag.name}
    changed = customer_tags_bulk_set(customers=customers, tag=tag, add=add, actor=action.created_by,
                                     evidence=f"客群批量操作：{action.segment.name}")
    return {"members": members, "changed": changed, "affected": changed, "tag_name": tag.name}


def _action_tasks(action: SegmentAction, customers) -> dict:
    """One open task per member for the member's (active) advisor, in one INSERT … SELECT."""
    from customers.models import Task
    from customers.services import tasks_create

    members = customers.count()
    made = tasks_create(source=Task.Source.SEGMENT, customers=customers, title=action.params["title"],
                        due_at=timezone.now() + timedelta(days=action.params["due_days"]),
                        source_label=f"客群：{action.segment.name}")
    created = len(made.created)
    return {"members": members, "created": created, "skipped": members - created, "affected": created}


def action_run(*, action_id) -> SegmentAction:
    """Carry out a queued action (idempotent per action: a finished one is left alone)."""
    from segments.actions import SEGMENT_ACTION_HANDLERS
    from segments.selectors import segment_members

    claimed = SegmentAction.objects.filter(pk=action_id, status=SegmentAction.Status.PENDING).update(
        status=SegmentAction.Status.RUNNING)
    action = SegmentAction.objects.select_related("segment", "created_by").get(pk=action_id)
    if not claimed:
        return action
    try:
        with transaction.atomic():
            customers = segment_members(action.segment, principal=action.created_by)
            if action.kind == SegmentAction.Kind.TAG_ADD:
                result = _action_tags(action, customers, add=True)
            elif action.kind == SegmentAction.Kind.TAG_REMOVE:
                result = _action_tags(action, customers, add=False)
            elif action.kind == SegmentAction.Kind.TASKS:
                result = _action_tasks(action, customers)
            else:
                handler = SEGMENT_ACTION_HANDLERS.get(action.kind)
                if handler is None:
                    label = ACTION_LABELS.get(action.kind, action.kind)
                    raise ApplicationError("action_unavailable", f"批量动作「{label}」尚未启用")
                result = handler(action=action, customers=customers, actor=action.created_by) or {}
            result = json.loads(json.dumps(result, default=str))
            affected = int(result.get("affected", result.get("changed", result.get("created", 0))) or 0)
            SegmentAction.objects.filter(pk=action.pk).update(status=SegmentAction.Status.DONE, result=result,
                                                              affected=affected, finished_at=timezone.now())
    except Exception as exc:
        logger.exception("segment action %s failed", action_id)
        message = exc.message if isinstance(exc, ApplicationError) else str(exc)
        SegmentAction.objects.filter(pk=action.pk).update(status=SegmentAction.Status.FAILED, error=message[:4000],
                                                          finished_at=timezone.now())
    action.refresh_from_db()
    return action

