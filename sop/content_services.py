"""Writes and reads behind the SOP content pages: the advisor's prepared WeCom messages (mark sent),
the guard policy, compliance's forbidden phrases, blocked touches, and a client's journeys.

Every write audits in its own transaction; every read of step runs starts from ``visible_to``.
"""

from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import Count
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import ApplicationError
from core.models import Role
from core.services import audit_record
from customers.models import Task
from sop.guards import BLOCK_REASONS
from sop.models import Channel, Enrollment, ForbiddenPhrase, GuardPolicy, Journey, StepRun

WECOM_TASK_SOURCE = Task.Source.SOP_WECOM
MESSAGE_STEP_TYPES = ("wecom_message", "wecom_group_message")
OUTCOME_LABELS = {
    "sent": gettext_lazy("已发送"), "delivered": gettext_lazy("已送达"), "replied": gettext_lazy("已回复"),
    "queued": gettext_lazy("待发送"), "prepared": gettext_lazy("已备好，待投顾发送"), "task_created": gettext_lazy("已建任务"),
    "waited": gettext_lazy("等待中"), "then": gettext_lazy("条件成立"), "else": gettext_lazy("条件不成立"),
    "invited": gettext_lazy("已邀请入群"), "tag_add": gettext_lazy("已打标签"), "tag_remove": gettext_lazy("已移除标签"),
    "webhook": gettext_lazy("已通知外部系统"), "held_calendar": gettext_lazy("等待交易日历"),
    "deferred_quiet_hours": gettext_lazy("免打扰时段，已顺延"), "skipped": gettext_lazy("投顾未发送（跳过）"),
}
PROBLEM_STATUSES = (StepRun.Status.BLOCKED, StepRun.Status.FAILED, StepRun.Status.DEAD)
CAP_PERIODS = ("day", "week", "month")


# --- the advisor's prepared WeCom messages -------------------------------------------------

def wecom_task_texts(tasks) -> dict[int, StepRun]:
    """``{task id: step run}`` for the SOP WeCom tasks among ``tasks`` (one query)."""
    wanted = [t for t in tasks if t.source == WECOM_TASK_SOURCE]
    if not wanted:
        return {}
    runs = (StepRun.objects.filter(enrollment__customer_id__in={t.customer_id for t in wanted},
                                   step_type__in=MESSAGE_STEP_TYPES, detail__task_id__in=[t.pk for t in wanted])
            .select_related("touch"))
    return {run.detail["task_id"]: run for run in runs}


def wecom_task_access(*, user, task_id: int):
    """The SOP WeCom task ``user`` may mark: its assignee's, or a manager's (branch manager in scope,
    admin). Anything else is 404, so existence does not leak."""
    from customers.models import Task

    task = Task.objects.visible_to(user).select_related("customer", "assignee").filter(
        pk=task_id, source=WECOM_TASK_SOURCE).first()
    if task is None:
        raise Http404("task not visible")
    if task.assignee_id != user.pk and user.role not in (Role.BRANCH_MANAGER, Role.ADMIN):
        raise Http404("not this user's task")
    return task


def wecom_task_mark_sent(*, user, task_id: int) -> StepRun:
    """The advisor sent the prepared message from WeCom: the touch becomes sent (by the task's
    assignee, now), the step run's outcome ``sent`` and the task done (reached) — together. Calling
    it again changes nothing."""
    from customers.models import Task, Touch
    from customers.services import task_complete

    task = wecom_task_access(user=user, task_id=task_id)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        run = (StepRun.objects.select_for_update().filter(
            enrollment__customer_id=task.customer_id, step_type__in=MESSAGE_STEP_TYPES, detail__task_id=task.pk)
            .first())
        if run is None:
            raise ApplicationError("sop_task_without_message", _("找不到该任务对应的 SOP 消息"))
        if run.outcome == "sent" and task.status != Task.Status.OPEN:
            return run  # already marked: twice is once
        if run.outcome == "skipped":
            raise ApplicationError("sop_message_skipped", _("该消息已标记为不发送"))
        if task.status == Task.Status.CANCELLED:
            raise ApplicationError("task_cancelled", _("该任务已取消"))
        now = timezone.now()
        if run.touch_id:
            Touch.objects.filter(pk=run.touch_id).update(status=Touch.Status.SENT, staff=task.assignee,
                                                         occurred_at=now)
        run.outcome = "sent"
        run.detail = {**run.detail, "sent_marked_by": user.pk, "sent_at": now.isoformat()}
        run.save(update_fields=["outcome", "detail"])
        if task.status == Task.Status.OPEN:
            task_complete(user=user, task=task, outcome=Task.Outcome.REACHED, note=_("已通过企业微信发送 SOP 消息"))
        audit_record(actor=user, action="sop.wecom_marked_sent", target_type="task", target_id=str(task.pk),
                     details={"step_run": run.pk, "touch": run.touch_id})
    return run


def wecom_task_skip(*, user, task_id: int, note: str = "") -> StepRun:
    """The advisor decided not to send (client unreachable, not the right moment): the touch is
    recorded as not sent (it no longer counts against the caps), the step run's outcome is
    ``skipped`` and the task is done as not reached. Calling it again changes nothing."""
    from customers.models import Task, Touch
    from customers.services import task_complete

    task = wecom_task_access(user=user, task_id=task_id)
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        run = (StepRun.objects.select_for_update().filter(
            enrollment__customer_id=task.customer_id, step_type__in=MESSAGE_STEP_TYPES, detail__task_id=task.pk)
            .first())
        if run is None:
            raise ApplicationError("sop_task_without_message", _("找不到该任务对应的 SOP 消息"))
        if run.outcome in ("sent", "skipped"):
            if run.outcome == "sent":
                raise ApplicationError("sop_message_sent", _("该消息已标记为已发送"))
            return run
        if task.status == Task.Status.CANCELLED:
            raise ApplicationError("task_cancelled", _("该任务已取消"))
        if run.touch_id:
            Touch.objects.filter(pk=run.touch_id).update(status=Touch.Status.FAILED)
        run.outcome = "skipped"
        run.detail = {**run.detail, "skipped_by": user.pk, "skip_note": note[:200]}
        run.save(update_fields=["outcome", "detail"])
        if task.status == Task.Status.OPEN:
            task_complete(user=user, task=task, outcome=Task.Outcome.NOT_REACHED, note=note or _("未发送 SOP 消息"))
        audit_record(actor=user, action="sop.wecom_skipped", target_type="task", target_id=str(task.pk),
                     details={"step_run": run.pk, "touch": run.touch_id})
    return run


# --- guard policy --------------------------------------------------------------------------

def guard_policy_get() -> GuardPolicy:
    return GuardPolicy.objects.filter(pk=1).first() or GuardPolicy(pk=1, caps={})


def guard_policy_save(*, actor, quiet_start: time, quiet_end: time, caps: dict) -> GuardPolicy:
    """Quiet hours and ``{channel: {"day"|"week"|"month": n}}`` (a missing period has no cap)."""
    clean = {}
    for channel, periods in (caps or {}).items():
        if channel not in Channel.values:
            raise ApplicationError("guard_invalid", _("未知渠道 %(channel)s") % {"channel": channel},
                                   [{"field": "caps", "message": channel}])
        values = {}
        for period, limit in (periods or {}).items():
            if period not in CAP_PERIODS or not isinstance(limit, int) or not 1 <= limit <= 1000:
                raise ApplicationError("guard_invalid", _("频次上限须为 1–1000 的整数"),
                                       [{"field": f"{channel}_{period}", "message": _("须为 1–1000 的整数")}])
            values[period] = limit
        ordered = [values[p] for p in CAP_PERIODS if p in values]
        if ordered != sorted(ordered):
            raise ApplicationError("guard_invalid", _("上限须满足 每日 ≤ 每周 ≤ 每月"),
                                   [{"field": f"{channel}_{CAP_PERIODS[-1] if 'month' in values else 'week'}",
                                     "message": _("须满足 每日 ≤ 每周 ≤ 每月")}])
        if values:
            clean[channel] = values
    with transaction.atomic():
        policy = GuardPolicy.objects.select_for_update().filter(pk=1).first() or GuardPolicy(pk=1, caps={})
        before = {"quiet_start": str(policy.quiet_start), "quiet_end": str(policy.quiet_end), "caps": policy.caps}
        policy.quiet_start, policy.quiet_end, policy.caps = quiet_start, quiet_end, clean
        policy.updated_by, policy.updated_at = actor, timezone.now()
        policy.save()
        audit_record(actor=actor, action="sop.guard_policy_saved", target_type="guard_policy", target_id="1",
                     details={"before": before, "after": {"quiet_start": str(quiet_start), "quiet_end": str(quiet_end),
                                                          "caps": clean}})
    return policy


# --- forbidden phrases ---------------------------------------------------------------------

def forbidden_phrase_add(*, actor, phrase: str, reason: str = "", kind: str = ForbiddenPhrase.Kind.FORBIDDEN
                         ) -> ForbiddenPhrase:
    """Add (or re-enable) a wording to compliance's lists: a forbidden promise or an accepted risk disclosure."""
    phrase = (phrase or "").strip()
    if kind not in ForbiddenPhrase.Kind.values:
        raise ApplicationError("phrase_invalid", _("未知的清单"), [{"field": "kind", "message": _("未知的清单")}])
    if not phrase:
        raise ApplicationError("phrase_invalid", _("请填写表述"), [{"field": "phrase", "message": _("必填")}])
    with transaction.atomic():
        existing = ForbiddenPhrase.objects.select_for_update().filter(phrase__iexact=phrase).first()
        if existing is not None and existing.kind != kind:
            message = _("该表述已在「%(list)s」清单中") % {"list": existing.get_kind_display()}
            raise ApplicationError("phrase_exists", message, [{"field": "phrase", "message": message}])
        if existing is not None and existing.active:
            raise ApplicationError("phrase_exists", _("该表述已在清单中"), [{"field": "phrase", "message": _("已存在")}])
        if existing is not None:
            existing.active, existing.reason = True, reason.strip() or existing.reason
            existing.save(update_fields=["active", "reason"])
            row = existing
        else:
            row = ForbiddenPhrase.objects.create(kind=kind, phrase=phrase[:50], reason=reason.strip()[:200],
                                                 created_by=actor)
        audit_record(actor=actor, action="sop.phrase_added", target_type="forbidden_phrase", target_id=str(row.pk),
                     details={"phrase": row.phrase, "kind": row.kind})
    return row


def forbidden_phrase_set_active(*, actor, phrase_id: int, active: bool) -> ForbiddenPhrase:
    with transaction.atomic():
        row = ForbiddenPhrase.objects.select_for_update().filter(pk=phrase_id).first()
        if row is None:
            raise Http404("phrase")
        row.active = active
        row.save(update_fields=["active"])
        audit_record(actor=actor, action="sop.phrase_activated" if active else "sop.phrase_deactivated",
                     target_type="forbidden_phrase", target_id=str(row.pk), details={"phrase": row.phrase})
    return row


# --- blocked touches -----------------------------------------------------------------------

def problem_reason_choices() -> list[tuple[str, str]]:
    return [*((k, str(v)) for k, v in BLOCK_REASONS.items()),
            ("failed", _("发送失败（待重试）")), ("dead", _("放弃（死信）"))]


def problem_reason_label(run: StepRun) -> str:
    if run.status == StepRun.Status.BLOCKED:
        return str(BLOCK_REASONS.get(run.block_reason, run.block_reason or _("已拦截")))
    label = _("放弃（死信）") if run.status == StepRun.Status.DEAD else _("发送失败（待重试）")
    return _("%(label)s：%(error)s") % {"label": label, "error": run.error} if run.error else label


def blocked_step_runs(*, user, filters: dict):
    """Blocked, failed and dead-letter step runs the user may see, newest first."""
    qs = StepRun.objects.visible_to(user).filter(status__in=PROBLEM_STATUSES)
    reason = filters.get("reason")
    if reason in ("failed", "dead"):
        qs = qs.filter(status=reason)
    elif reason:
        qs = qs.filter(status=StepRun.Status.BLOCKED, block_reason=reason)
    if filters.get("journey"):
        qs = qs.filter(enrollment__journey=filters["journey"])
    tz = timezone.get_current_timezone()
    if filters.get("since"):
        qs = qs.filter(created_at__gte=timezone.make_aware(datetime.combine(filters["since"], time.min), tz))
    if filters.get("until"):
        qs = qs.filter(created_at__lt=timezone.make_aware(datetime.combine(filters["until"] + timedelta(days=1),
                                                                           time.min), tz))
    return (qs.select_related("enrollment__journey", "enrollment__customer", "touch")
            .order_by("-created_at", "-pk"))


def blocked_summary(*, user, days: int = 7) -> dict:
    since = timezone.now() - timedelta(days=days)
    rows = (StepRun.objects.visible_to(user).filter(status__in=PROBLEM_STATUSES, created_at__gte=since)
            .values("block_reason").annotate(n=Count("pk")).order_by("-n"))
    return {"total": sum(r["n"] for r in rows),
            "top": [(str(BLOCK_REASONS.get(r["block_reason"], r["block_reason"] or _("失败/死信"))), r["n"]) for r in rows[:3]]}


def customer_masked_name(name: str) -> str:
    return (name[:1] + "*" * max(1, len(name) - 1)) if name else "—"


# --- a client's journeys -------------------------------------------------------------------

def customer_journeys(*, customer) -> list[dict]:
    """This client's enrollments, newest first, each with its latest step run and next due step."""
    enrollments = list(Enrollment.objects.filter(customer=customer).select_related("journey", "version")
                       .order_by("-entered_at", "-pk")[:50])
    latest, due = {}, {}
    runs = (StepRun.objects.filter(enrollment__in=enrollments).order_by("enrollment_id", "-created_at", "-pk")
            .only("enrollment_id", "step_id", "step_type", "status", "outcome", "block_reason", "error", "due_at",
                  "created_at", "finished_at"))
    for run in runs:
        latest.setdefault(run.enrollment_id, run)
        if run.status in (StepRun.Status.DUE, StepRun.Status.FAILED, StepRun.Status.CLAIMED):
            due.setdefault(run.enrollment_id, run)
    rows = []
    for e in enrollments:
        run = latest.get(e.pk)
        rows.append({"enrollment": e, "journey": e.journey, "version": e.version.number, "current": run,
                     "next_due": due.get(e.pk),
                     "last_outcome": (problem_reason_label(run) if run and run.status in PROBLEM_STATUSES
                                      else (OUTCOME_LABELS.get(run.outcome, run.outcome) if run else "")),
                     "blocked": bool(run and run.status in PROBLEM_STATUSES)})
    return rows


def journeys_for_filter():
    return Journey.objects.exclude(status=Journey.Status.DRAFT).order_by("name")


def wecom_tasks_attach(*task_lists) -> None:
    """Give each SOP WeCom task of the lists its step run as ``task.sop_message`` (for the inbox rows)."""
    tasks = [t for tasks in task_lists for t in tasks]
    runs = wecom_task_texts(tasks)
    for task in tasks:
        task.sop_message = runs.get(task.pk)
