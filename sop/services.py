"""Journeys: edit a draft, publish it as a new immutable version, pause, resume, archive, dry-run.

Editing a live journey edits its draft; publishing makes a new version. Enrolled clients finish on
the version they entered (their step runs point at it), new entries take the new one.
"""

from collections import Counter

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.errors import ApplicationError
from core.services import audit_record
from sop.definition import MESSAGE_STEPS, definition_validate
from sop.models import Enrollment, Journey, JourneyVersion, StepRun
from sop.triggers import live_triggers_forget


def journey_create(*, actor, name: str, description: str = "", definition: dict) -> Journey:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("journey_invalid", "请填写旅程名称", [{"field": "name", "message": "必填"}])
    definition_validate(definition)
    with transaction.atomic():
        journey = Journey.objects.create(name=name[:100], description=description[:500], draft=definition,
                                         created_by=actor)
        audit_record(actor=actor, action="sop.journey_created", target_type="journey", target_id=str(journey.pk))
    return journey


def journey_draft_save(*, actor, journey: Journey, definition: dict, name: str | None = None) -> Journey:
    if journey.status == Journey.Status.ARCHIVED:
        raise ApplicationError("journey_archived", "已归档的旅程不能修改")
    definition_validate(definition)
    journey.draft = definition
    journey.name = (name or journey.name).strip()[:100]
    journey.updated_at = timezone.now()
    journey.save(update_fields=["draft", "name", "updated_at"])
    return journey


def journey_publish(*, actor, journey: Journey) -> JourneyVersion:
    """Validate the draft and make it the live version (a new number); the journey runs."""
    definition_validate(journey.draft)
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status == Journey.Status.ARCHIVED:
            raise ApplicationError("journey_archived", "已归档的旅程不能发布")
        number = (journey.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = JourneyVersion.objects.create(journey=journey, number=number, definition=journey.draft,
                                                trigger_type=journey.draft["trigger"]["type"], published_by=actor)
        journey.live_version, journey.status, journey.updated_at = version, Journey.Status.LIVE, timezone.now()
        journey.save(update_fields=["live_version", "status", "updated_at"])
        live_triggers_forget()
        audit_record(actor=actor, action="sop.journey_published", target_type="journey", target_id=str(journey.pk),
                     details={"version": number})
    return version


def journey_set_status(*, actor, journey: Journey, status: str) -> Journey:
    """Pause (due steps wait), resume, or archive (active enrollments exit, pending steps cancel)."""
    allowed = {Journey.Status.PAUSED: {Journey.Status.LIVE}, Journey.Status.LIVE: {Journey.Status.PAUSED},
               Journey.Status.ARCHIVED: {Journey.Status.LIVE, Journey.Status.PAUSED, Journey.Status.DRAFT}}
    if journey.status not in allowed.get(status, set()):
        raise ApplicationError("journey_status", f"旅程当前为「{journey.get_status_display()}」，不能改为该状态")
    with transaction.atomic():
        journey.status, journey.updated_at = status, timezone.now()
        journey.save(update_fields=["status", "updated_at"])
        if status == Journey.Status.ARCHIVED:
            now = timezone.now()
            StepRun.objects.filter(enrollment__journey=journey, status__in=["due", "failed"]).update(
                status=StepRun.Status.CANCELLED, finished_at=now)
            Enrollment.objects.filter(journey=journey, status=Enrollment.Status.ACTIVE).update(
                status=Enrollment.Status.EXITED, finished_at=now)
        live_triggers_forget()
        audit_record(actor=actor, action=f"sop.journey_{status}", target_type="journey", target_id=str(journey.pk))
    return journey


def journey_dry_run(*, definition: dict, customers, journey: Journey | None = None, limit: int = 20000) -> dict:
    """Who would enter (entry rule, already in the journey, hold-out) and, for each message step, how
    many the guards would block and why — without writing anything."""
    from segments.rules import rule_compile
    from sop.engine import in_holdout
    from sop.guards import TouchCandidate, guards_check
    from sop.models import MessageTemplate

    definition_validate(definition)
    candidates = customers
    if definition.get("entry_rule"):
        candidates = candidates.filter(rule_compile(definition["entry_rule"]))
    total = candidates.count()
    if journey is not None:
        candidates = candidates.exclude(sop_enrollments__journey=journey, sop_enrollments__status="active")
    rows = list(candidates.select_related("advisor")[:limit])
    percent = int(definition.get("holdout_percent") or 0)
    holdout = sum(1 for c in rows if journey is not None and in_holdout(journey.pk, c.pk, percent)) if journey else \
        round(len(rows) * percent / 100)
    steps = []
    for step in definition["steps"]:
        if step["type"] not in MESSAGE_STEPS:
            continue
        template = MessageTemplate.objects.filter(pk=step["template"]).first()
        version = template.approved_version() if template else None
        if version is None:
            steps.append({"step": step["id"], "blocked": {"template_not_approved": len(rows)}, "would_send": 0})
            continue
        verdicts = guards_check([TouchCandidate(key=c.pk, customer=c, channel=MESSAGE_STEPS[step["type"]],
                                                product=version.product, executor=step.get("executor", "system"))
                                 for c in rows])
        blocked = Counter(v[1] for v in verdicts.values() if v[0] == "block")
        steps.append({"step": step["id"], "blocked": dict(blocked), "would_send": len(rows) - sum(blocked.values())})
    return {"matching": total, "would_enter": len(rows) - holdout, "holdout": holdout,
            "already_in": total - len(rows) if len(rows) < limit else None, "steps": steps,
            "truncated": len(rows) >= limit}
