"""Journeys: edit a draft, publish it as a new immutable version, pause, resume, archive, dry-run.

Editing a live journey edits its draft; publishing makes a new version. Enrolled clients finish on
the version they entered (their step runs point at it), new entries take the new one.
"""

import copy
from collections import Counter

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import ApplicationError
from core.services import audit_record
from sop.definition import MESSAGE_STEPS, definition_validate, successors
from sop.models import Enrollment, Journey, JourneyVersion, StepRun
from sop.triggers import live_triggers_forget


def journey_create(*, actor, name: str, description: str = "", definition: dict) -> Journey:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("journey_invalid", _("请填写旅程名称"), [{"field": "name", "message": _("必填")}])
    definition_validate(definition)
    with transaction.atomic():
        journey = Journey.objects.create(name=name[:100], description=description[:500], draft=definition,
                                         created_by=actor)
        audit_record(actor=actor, action="sop.journey_created", target_type="journey", target_id=str(journey.pk))
    return journey


def journey_draft_save(*, actor, journey: Journey, definition: dict, name: str | None = None,
                       description: str | None = None) -> Journey:
    if journey.status == Journey.Status.ARCHIVED:
        raise ApplicationError("journey_archived", _("已归档的旅程不能修改"))
    definition_validate(definition)
    journey.draft = definition
    journey.name = (name or journey.name).strip()[:100]
    if description is not None:
        journey.description = description.strip()[:500]
    journey.updated_at = timezone.now()
    journey.save(update_fields=["draft", "name", "description", "updated_at"])
    return journey


def journey_publish(*, actor, journey: Journey) -> JourneyVersion:
    """Validate the draft and make it the live version (a new number); the journey runs."""
    definition_validate(journey.draft)
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status == Journey.Status.ARCHIVED:
            raise ApplicationError("journey_archived", _("已归档的旅程不能发布"))
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
        raise ApplicationError("journey_status", _("旅程当前为「%(status)s」，不能改为该状态")
                               % {"status": journey.get_status_display()})
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


def journey_dry_run(*, definition: dict, customers, journey: Journey | None = None, limit: int = 20000,
                    now=None) -> dict:
    """Who would enter (entry rule, already in the journey, hold-out) and what each step would do, walking the
    flow as the engine does — without writing anything. Hold-out clients execute nothing; a branch sends each
    client down one arm (A/B split by the same hash as the engine, estimated per client since the enrollment
    does not exist yet; rule, tag and reply conditions as they stand ``now``); a message step reports how many
    the guards would block and why, and blocked clients go on like the engine's do."""
    from sop.engine import in_holdout
    from sop.guards import TouchCandidate, guards_check
    from sop.models import MessageTemplate
    from sop.steps import branch_taken

    now = now or timezone.now()
    definition_validate(definition)
    candidates = customers
    if definition.get("entry_rule"):
        from segments.rules import rule_compile

        candidates = candidates.filter(rule_compile(definition["entry_rule"], now=now))
    total = candidates.count()
    if journey is not None:
        candidates = candidates.exclude(sop_enrollments__journey=journey, sop_enrollments__status="active")
    rows = list(candidates.select_related("advisor")[:limit])
    percent = int(definition.get("holdout_percent") or 0)
    journey_key = journey.pk if journey is not None else 0
    entering = [c for c in rows if not in_holdout(journey_key, c.pk, percent)]
    steps_by_id = {s["id"]: s for s in definition["steps"]}
    reaching: dict[str, dict[int, object]] = {definition["start"]: {c.pk: c for c in entering}}
    report = []
    for step_id in _flow_order(definition):
        step, here = steps_by_id[step_id], reaching.get(step_id, {})
        row = {"step": step_id, "reaching": len(here), "blocked": {}, "would_send": None, "arms": None}
        onward = {key: here for key in ("next",)}
        if step["type"] in MESSAGE_STEPS:
            template = MessageTemplate.objects.filter(pk=step["template"]).first()
            version = template.approved_version() if template else None
            if version is None:
                row["blocked"] = {"template_not_approved": len(here)} if here else {}
            else:
                verdicts = guards_check([TouchCandidate(key=c.pk, customer=c, channel=MESSAGE_STEPS[step["type"]],
                                                        product=version.product, executor=step.get("executor", "system"))
                                         for c in here.values()], now=now)
                row["blocked"] = dict(Counter(v[1] for v in verdicts.values() if v[0] == "block"))
            row["would_send"] = len(here) - sum(row["blocked"].values())
        elif step["type"] == "branch":
            taken = branch_taken(step, list(here), now=now)
            onward = {"then": {pk: c for pk, c in here.items() if pk in taken},
                      "else": {pk: c for pk, c in here.items() if pk not in taken}}
            row["arms"] = {"then": len(onward["then"]), "else": len(onward["else"])}
        for key, group in onward.items():
            if step.get(key):
                reaching.setdefault(step[key], {}).update(group)
        report.append(row)
    return {"matching": total, "would_enter": len(entering), "holdout": len(rows) - len(entering),
            "already_in": total - len(rows) if len(rows) < limit else None, "steps": report,
            "truncated": len(rows) >= limit}


def _flow_order(definition: dict) -> list[str]:
    """Step ids reachable from the start, each after every step leading to it (the flow is acyclic)."""
    steps = {s["id"]: s for s in definition["steps"]}
    order, seen = [], set()

    def visit(step_id):
        if step_id in seen or step_id not in steps:
            return
        seen.add(step_id)
        for nxt in successors(steps[step_id]):
            visit(nxt)
        order.append(step_id)

    visit(definition["start"])
    return list(reversed(order))


# --- editing the draft one step at a time (the flow editor) -------------------------------------

def step_id_new(definition: dict, step_type: str) -> str:
    ids = {s.get("id") for s in definition.get("steps", [])}
    n = 1
    while f"{step_type}_{n}" in ids:
        n += 1
    return f"{step_type}_{n}"


def _pointers_to(definition: dict, step_id: str) -> list[tuple[dict, str]]:
    """(holder, key) pairs that point at ``step_id``: the definition's start and every step's next/then/else."""
    found = [(definition, "start")] if definition.get("start") == step_id else []
    for step in definition["steps"]:
        for key in ("next", "then", "else"):
            if step.get(key) == step_id:
                found.append((step, key))
    return found


def definition_step_insert(definition: dict, *, step: dict, after: str | None, arm: str = "next") -> dict:
    """A copy of ``definition`` with ``step`` inserted after step ``after`` on its ``arm`` (next/then/else),
    or at the start when ``after`` is empty; the new step continues where the arm went."""
    new = copy.deepcopy(definition)
    step = dict(step)
    if not after:
        target = new.get("start")
        new["start"] = step["id"]
    else:
        holder = next((s for s in new["steps"] if s["id"] == after), None)
        if holder is None or arm not in (("then", "else") if holder["type"] == "branch" else ("next",)):
            raise ApplicationError("journey_step", _("插入位置不存在"), [{"field": "after", "message": _("插入位置不存在")}])
        target = holder.get(arm)
        holder[arm] = step["id"]
    if step["type"] == "branch":
        step["then"], step["else"] = target, None
    else:
        step["next"] = target
    new["steps"].append(step)
    return new


def definition_step_replace(definition: dict, *, step: dict) -> dict:
    """A copy with the step of the same id replaced (its links kept unless ``step`` names them)."""
    new = copy.deepcopy(definition)
    for i, old in enumerate(new["steps"]):
        if old["id"] == step["id"]:
            links = {k: old.get(k) for k in ("next", "then", "else") if k in old}
            if step["type"] == "branch":
                merged = {"then": links.get("then", links.get("next")), "else": links.get("else")}
            else:
                merged = {"next": links.get("next", links.get("then"))}
            new["steps"][i] = {**step, **{k: v for k, v in merged.items() if k not in step}}
            return new
    raise ApplicationError("journey_step", _("步骤不存在"))


def definition_step_delete(definition: dict, *, step_id: str) -> dict:
    """A copy without the step; whatever pointed at it continues with its next (a branch: with its "then"
    arm — the steps only its "else" arm reached go too)."""
    new = copy.deepcopy(definition)
    step = next((s for s in new["steps"] if s["id"] == step_id), None)
    if step is None:
        raise ApplicationError("journey_step", _("步骤不存在"))
    follow = step.get("then") if step["type"] == "branch" else step.get("next")
    for holder, key in _pointers_to(new, step_id):
        holder[key] = follow
    new["steps"] = [s for s in new["steps"] if s["id"] != step_id]
    reachable, stack = set(), [new.get("start")]
    by_id = {s["id"]: s for s in new["steps"]}
    while stack:
        sid = stack.pop()
        if sid in by_id and sid not in reachable:
            reachable.add(sid)
            stack.extend(successors(by_id[sid]))
    new["steps"] = [s for s in new["steps"] if s["id"] in reachable]
    return new


# --- dead letters --------------------------------------------------------------------------------

def step_run_retry(*, actor, step_run: StepRun, now=None) -> StepRun:
    """Put a dead-lettered step run back in the queue (due ``now``, attempts reset); audited. The idempotency
    key is unchanged, so a touch the provider already accepted is not sent twice."""
    with transaction.atomic():
        run = StepRun.objects.select_for_update().select_related("enrollment__journey").get(pk=step_run.pk)
        if run.status != StepRun.Status.DEAD:
            raise ApplicationError("step_run_not_dead", _("只有死信步骤可以重试"))
        if run.enrollment.journey.status == Journey.Status.ARCHIVED or run.enrollment.status == Enrollment.Status.EXITED:
            raise ApplicationError("journey_archived", _("旅程已归档或客户已退出，不能重试"))
        previous_error = run.error
        run.status, run.attempts, run.due_at = StepRun.Status.DUE, 0, now or timezone.now()
        run.error, run.claimed_at, run.finished_at = "", None, None
        run.save(update_fields=["status", "attempts", "due_at", "error", "claimed_at", "finished_at"])
        audit_record(actor=actor, action="sop.step_run_retried", target_type="step_run", target_id=str(run.pk),
                     details={"journey": run.enrollment.journey_id, "step": run.step_id, "error": previous_error[:500]})
    return run
