"""What each step type does, for a batch of step runs of that type (called by sop/engine.py inside
the batch's transaction). A handler returns a StepResult per step run and never commits itself.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.utils import timezone

from core.crypto import decrypt
from sop.calendar import CalendarUnknown, next_trading_day
from sop.definition import MESSAGE_STEPS


@dataclass
class StepResult:
    outcome: str = "done"
    next_step: str | None = None  # None: the step's "next"
    next_due_at: datetime | None = None
    block_reason: str = ""
    defer_until: datetime | None = None
    retry: bool = False
    dead: bool = False
    error: str = ""
    touch_id: int | None = None
    detail: dict = field(default_factory=dict)


def _step(run) -> dict:
    return next(s for s in run.enrollment.version.definition["steps"] if s["id"] == run.step_id)


def run_steps(step_type: str, runs: list, *, now) -> dict[int, StepResult]:
    handler = HANDLERS[step_type]
    return handler(runs, now=now)


# --- wait / branch -------------------------------------------------------------------------

def _at(day, hhmm: str, tz) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return timezone.make_aware(datetime.combine(day, time(hour, minute)), tz)


def _wait(runs, *, now):
    results = {}
    local = timezone.localtime(now)
    for run in runs:
        step = _step(run)
        if step.get("minutes"):
            due = now + timedelta(minutes=step["minutes"])
        elif step.get("until_time"):
            due = _at(local.date(), step["until_time"], local.tzinfo)
            if due <= now:
                due = _at(local.date() + timedelta(days=1), step["until_time"], local.tzinfo)
        else:
            try:
                due = _at(next_trading_day(local.date()), step.get("at", "09:00"), local.tzinfo)
            except CalendarUnknown as exc:  # hold and say why; never guess open or closed
                results[run.pk] = StepResult(outcome="held_calendar", defer_until=now + timedelta(hours=6),
                                             detail={"held": exc.message})
                continue
        results[run.pk] = StepResult(outcome="waited", next_due_at=due)
    return results


def ab_variant(key: int, step_id: str, percent_a: int) -> str:
    """The arm of an A/B split: a stable hash of the enrollment (``key``) and the step."""
    digest = hashlib.sha256(f"ab:{key}:{step_id}".encode()).digest()
    return "A" if int.from_bytes(digest[:4], "big") % 100 < percent_a else "B"


def branch_taken(step: dict, customer_ids: list[int], *, now, ab_keys: dict[int, int] | None = None) -> set[int]:
    """The customers (of ``customer_ids``) that take a branch step's "then" arm ``now``: one definition for the
    engine and the dry run. A/B hashes ``ab_keys[customer]`` (the enrollment; the customer id when there is
    none yet); "has tag" is the rule language's tag condition, so an expired tag counts as gone here as in
    every segment."""
    from customers.models import Customer, Touch
    from segments.rules import rule_compile

    condition = step["condition"]
    kind = condition["kind"]
    if kind == "ab":
        keys = ab_keys or {}
        return {c for c in customer_ids if ab_variant(keys.get(c, c), step["id"], condition["percent_a"]) == "A"}
    if kind == "rule":
        rule = condition["rule"]
    elif kind == "tag":
        rule = {"type": "tag", "op": "has", "tag": condition["tag"]}
    elif kind == "replied":
        since = now - timedelta(hours=condition["within_hours"])
        return set(Touch.objects.filter(customer_id__in=customer_ids, direction="in", occurred_at__gte=since)
                   .exclude(source__in=Touch.BOOKKEEPING_SOURCES).values_list("customer_id", flat=True))
    else:
        return set()
    return set(Customer.objects.filter(pk__in=customer_ids).filter(rule_compile(rule, now=now))
               .values_list("pk", flat=True))


def _branch(runs, *, now):
    from sop.models import Enrollment

    results = {}
    by_step: dict[tuple, list] = {}
    for run in runs:
        by_step.setdefault((run.enrollment.version_id, run.step_id), []).append(run)
    for group in by_step.values():
        step = _step(group[0])
        taken = branch_taken(step, [r.enrollment.customer_id for r in group], now=now,
                             ab_keys={r.enrollment.customer_id: r.enrollment_id for r in group})
        if step["condition"]["kind"] == "ab":  # the first A/B split a client meets names their variant
            for variant, chosen in (("A", True), ("B", False)):
                Enrollment.objects.filter(pk__in=[r.enrollment_id for r in group
                                                  if (r.enrollment.customer_id in taken) is chosen],
                                          variant="").update(variant=variant)
        for run in group:
            branch = "then" if run.enrollment.customer_id in taken else "else"
            results[run.pk] = StepResult(outcome=branch, next_step=step.get(branch) or "")
    return results


# --- touches -------------------------------------------------------------------------------

def _messages(runs, *, now):
    """SMS / app push / WeCom 1:1 / WeCom group: guards, render, send or prepare, record the touch."""
    from customers.models import Touch
    from sop.guards import TouchCandidate, guards_check
    from sop.models import MessageTemplate
    from sop.templates_lint import template_render
    from tagging.tiers import tier_definitions

    results, tier_labels = {}, {code: d.label for code, d in tier_definitions().items()}
    templates = {t.pk: t for t in MessageTemplate.objects.filter(pk__in={_step(r)["template"] for r in runs})}
    approved = {pk: t.approved_version() for pk, t in templates.items()}
    candidates, ready = [], []
    for run in runs:
        step = _step(run)
        version = approved.get(step["template"])
        channel = MESSAGE_STEPS[step["type"]]
        if version is None:
            results[run.pk] = StepResult(outcome="blocked", block_reason="template_not_approved")
            continue
        candidates.append(TouchCandidate(key=run.pk, customer=run.enrollment.customer, channel=channel,
                                         product=version.product, executor=step.get("executor", "system")))
        ready.append((run, step, version, channel))
    verdicts = guards_check(candidates, now=now)
    touches, sends = {}, {"sms": [], "app_push": []}
    for run, step, version, channel in ready:
        customer = run.enrollment.customer
        content = template_render(version, customer=customer, advisor=customer.advisor, tier_labels=tier_labels)
        verdict = verdicts.get(run.pk)
        if verdict and verdict[0] == "defer":
            results[run.pk] = StepResult(outcome="deferred_quiet_hours", defer_until=verdict[1])
            continue
        blocked = verdict[1] if verdict else ""
        touches[run.pk] = Touch(customer=customer, channel=channel, content=content,
                                status=Touch.Status.BLOCKED if blocked else Touch.Status.QUEUED,
                                staff=customer.advisor if step.get("executor") == "advisor" else None,
                                source=f"sop:{run.enrollment.journey_id}", occurred_at=now)
        results[run.pk] = StepResult(outcome="blocked" if blocked else "queued", block_reason=blocked,
                                     detail={"template_version": version.pk})
        if not blocked and channel in sends:
            to = decrypt(customer.mobile_encrypted) if channel == "sms" and customer.mobile_encrypted else customer.external_id
            sends[channel].append({"idempotency_key": run.idempotency_key, "to": to, "content": content, "_run": run})
    _provider_send(sends, touches, results)
    _advisor_prepare([r for r in ready if r[3] in ("wecom", "wecom_group")], touches, results, now)
    created = Touch.objects.bulk_create(list(touches.values()))
    for key, touch in zip(list(touches), created, strict=True):
        results[key].touch_id = touch.pk
    return results


def _provider_send(sends, touches, results):
    from customers.models import Touch
    from sop.providers import ProviderUnavailable, send_batch

    for channel, messages in sends.items():
        if not messages:
            continue
        try:
            answers = send_batch(channel, [{k: v for k, v in m.items() if k != "_run"} for m in messages])
        except ProviderUnavailable as exc:
            for m in messages:
                touches.pop(m["_run"].pk, None)
                results[m["_run"].pk] = StepResult(retry=True, error=exc.message)
            continue
        for m in messages:
            run, answer = m["_run"], answers.get(m["idempotency_key"])
            if answer is None or not answer.accepted:
                touches[run.pk].status = Touch.Status.FAILED
                error = answer.error if answer else "no answer"
                results[run.pk] = StepResult(outcome="failed", dead=True, error=f"服务商拒收：{error}",
                                             detail={"provider_error": error})
                continue
            touches[run.pk].status = Touch.Status.SENT
            results[run.pk].outcome = "sent"
            results[run.pk].detail.update(message_id=answer.message_id, duplicate_resend=answer.duplicate)


def _advisor_prepare(items, touches, results, now):
    """WeCom messages go out from the advisor's WeCom: a task with the prepared text for the advisor
    (the group-message template is created in WeCom when it is configured)."""
    from customers.models import Task
    from customers.services import tasks_create
    from sop.wecom_send import wecom_templates_create

    prepared, rows = [], []
    for run, step, _version, channel in items:
        if results[run.pk].block_reason or run.pk not in touches:
            continue
        customer = run.enrollment.customer
        title = ("发送企业微信消息给 " if channel == "wecom" else "在客户群发送消息：") + customer.name
        rows.append({"customer_id": customer.pk, "assignee_id": customer.advisor_id, "title": title,
                     "source_label": f"{run.enrollment.journey.name} · {step['id']}"[:200]})
        prepared.append(run)
        results[run.pk].outcome = "prepared"
        results[run.pk].detail["text"] = touches[run.pk].content
    made = tasks_create(source=Task.Source.SOP_WECOM, rows=rows, due_at=now + timedelta(hours=24), now=now)
    task_of = {(customer_id, label): pk for pk, customer_id, label in made.rows}
    for run, row in zip(prepared, rows, strict=True):
        results[run.pk].detail["task_id"] = task_of.get((row["customer_id"], row["source_label"]))
    wecom_templates_create([(run, results[run.pk]) for run in prepared])


# --- actions -------------------------------------------------------------------------------

def _task(runs, *, now):
    from customers.models import Task
    from customers.services import tasks_create

    results, pending, rows = {}, [], []
    for run in runs:
        step, customer = _step(run), run.enrollment.customer
        if customer.advisor_id is None or not customer.advisor.is_active:
            results[run.pk] = StepResult(outcome="blocked", block_reason="no_advisor")
            continue
        pending.append(run)
        rows.append({"customer_id": customer.pk, "assignee_id": customer.advisor_id, "title": step["title"],
                     "due_at": now + timedelta(hours=step["due_hours"]),
                     "source_label": f"{run.enrollment.journey.name} · {step['id']}"[:200]})
    made = tasks_create(source=Task.Source.SOP, rows=rows, now=now)
    task_of = {(customer_id, label): pk for pk, customer_id, label in made.rows}
    for run, row in zip(pending, rows, strict=True):
        task_id = task_of.get((row["customer_id"], row["source_label"]))
        results[run.pk] = StepResult(outcome="task_created", detail={"task_id": task_id}) if task_id else \
            StepResult(outcome="blocked", block_reason="advisor_out_of_scope")
    return results


def _tag(runs, *, now):
    """Add/remove tags set-based: one statement per (tag, add/remove) in the batch."""
    from tagging.models import Tag, TagSource
    from tagging.rule_tags import customer_tags_bulk_set

    results, groups = {}, {}
    for run in runs:
        step = _step(run)
        groups.setdefault((step["tag"], step["type"] == "tag_add", run.enrollment.journey), []).append(run)
    tags = {t.code: t for t in Tag.objects.filter(code__in={code for code, _, _ in groups})}
    for (code, add, journey), group in groups.items():
        if code not in tags:
            for run in group:
                results[run.pk] = StepResult(retry=True, error=f"标签 {code} 不存在")
            continue
        customer_tags_bulk_set(customer_ids=[r.enrollment.customer_id for r in group], tag=tags[code], add=add,
                               actor=f"SOP {journey.name}", evidence=f"SOP 旅程「{journey.name}」",
                               source=TagSource.RULE)
        for run in group:
            results[run.pk] = StepResult(outcome="tag_add" if add else "tag_remove")
    return results


def _group_invite(runs, *, now):
    from customers.models import Customer
    from groups.models import GroupChat

    results = {}
    by_group: dict[int, list] = {}
    for run in runs:
        by_group.setdefault(_step(run)["group"], []).append(run)
    for group_id, group_runs in by_group.items():
        group = GroupChat.objects.filter(pk=group_id, status=GroupChat.Status.ACTIVE).first()
        if group is None:
            for run in group_runs:
                results[run.pk] = StepResult(outcome="failed", dead=True, error="群不存在或已解散")
            continue
        from groups.services import group_invite_tasks_create

        customers = Customer.objects.filter(pk__in=[r.enrollment.customer_id for r in group_runs])
        group_invite_tasks_create(actor=None, group=group, customers=customers)
        for run in group_runs:
            results[run.pk] = StepResult(outcome="invited")
    return results


def _webhook(runs, *, now):
    from integrations.webhooks import webhook_events_emit

    events = []
    for run in runs:
        customer = run.enrollment.customer
        events.append(({"journey": run.enrollment.journey_id, "journey_name": run.enrollment.journey.name,
                        "step": run.step_id, "customer": customer.external_id,
                        "at": now.isoformat()}, customer.branch_id))
    webhook_events_emit(event_type="sop.step_done", events=events)
    return {run.pk: StepResult(outcome="webhook") for run in runs}


HANDLERS = {"wait": _wait, "branch": _branch, "task": _task, "tag_add": _tag, "tag_remove": _tag,
            "group_invite": _group_invite, "webhook": _webhook, **dict.fromkeys(MESSAGE_STEPS, _messages)}
