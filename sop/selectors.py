"""Reading journeys for the operator pages: the list with its counters, the flow of a definition as a
tree for the editor, and a version's results (per-step funnel, A/B, hold-out, enrollments, dead letters).

Every count that comes from clients' rows (enrollments, step runs) is cut to the viewer's data scope
(core.scoping), and each read is a fixed number of queries whatever the number of journeys or clients.
"""

import math
from collections import defaultdict
from datetime import timedelta

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, OuterRef, Q, Subquery
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from core.access import may
from core.scoping import scope_for
from customers.models import Touch
from sop.definition import GOALS, MESSAGE_STEPS, TRIGGERS, successors
from sop.models import Enrollment, Journey, JourneyVersion, MessageTemplate, StepRun, TemplateVersion

SENT_TOUCH = ("sent", "delivered", "replied")
STEP_LABELS = {
    "wait": gettext_lazy("等待"), "branch": gettext_lazy("分支"), "task": gettext_lazy("投顾任务"),
    "tag_add": gettext_lazy("打标签"), "tag_remove": gettext_lazy("移除标签"), "group_invite": gettext_lazy("邀请入群"),
    "webhook": "Webhook", "wecom_message": gettext_lazy("企业微信 1 对 1"), "wecom_group_message": gettext_lazy("企业微信群"),
    "sms": gettext_lazy("短信"), "app_push": gettext_lazy("App 推送"),
}
BRANCH_LABELS = {"rule": gettext_lazy("满足规则"), "replied": gettext_lazy("客户已回复"), "tag": gettext_lazy("带有标签"),
                 "ab": gettext_lazy("A/B 分流")}


# --- access ------------------------------------------------------------------------------------

def require_sop(user) -> None:
    if not (getattr(user, "is_authenticated", False) and may(user, "sop")):
        raise Http404("SOP journeys are not available for this role")


def journey_get_for_user(*, user, journey_id: int) -> Journey:
    """The journey, for the roles of the "sop" navigation entry; 404 for everyone else."""
    require_sop(user)
    journey = Journey.objects.select_related("live_version").filter(pk=journey_id).first()
    if journey is None:
        raise Http404("no such journey")
    return journey


# --- words -------------------------------------------------------------------------------------

def trigger_describe(trigger: dict, names: dict | None = None) -> str:
    """A trigger in words: 「打上标签：两融意向」. ``names`` maps ("tag", code) / ("segment", id) to labels."""
    names = names or {}
    kind = (trigger or {}).get("type", "")
    label = TRIGGERS.get(kind, kind or "—")
    if kind == "tag_added":
        return _("%(trigger)s：%(what)s") % {"trigger": label, "what": names.get(("tag", trigger.get("tag")), trigger.get("tag"))}
    if kind in ("segment_entered", "manual") and trigger.get("segment"):
        seg = names.get(("segment", trigger["segment"]), f"#{trigger['segment']}")
        return _("%(trigger)s：%(what)s") % {"trigger": label, "what": seg}
    if kind == "schedule":
        days = _("每个交易日") if trigger.get("days", "trading") == "trading" else _("每天")
        seg = names.get(("segment", trigger.get("segment")), f"#{trigger.get('segment')}")
        return f"{days} {trigger.get('at')} · {seg}"
    if kind in ("funnel_stage", "funnel_stalled"):
        from customers.models import FunnelStage

        stage = dict(FunnelStage.choices).get(trigger.get("stage"), trigger.get("stage"))
        if kind == "funnel_stalled":
            return _("%(trigger)s：%(stage)s，超过 %(hours)s 小时") % {"trigger": label, "stage": stage,
                                                                     "hours": trigger.get("hours")}
        return _("%(trigger)s：%(what)s") % {"trigger": label, "what": stage}
    if kind == "date_field":
        if trigger.get("field") == "birthday":
            return _("生日前 %(n)s 天") % {"n": trigger.get("days_before")}
        return _("风测到期前 %(n)s 天") % {"n": trigger.get("days_before")}
    if kind == "tier_changed" and trigger.get("to"):
        tiers = pgettext("punctuation", "、").join(str(names.get(("tier", code), code)) for code in trigger["to"])
        return _("%(trigger)s：变为 %(tiers)s") % {"trigger": label, "tiers": tiers}
    return str(label)


def trigger_names(triggers: list[dict]) -> dict:
    """Labels of the tags, segments and tiers the triggers name, in three queries at most."""
    from segments.models import Segment
    from tagging.models import Tag, TierDefinition

    tags = {t.get("tag") for t in triggers if t and t.get("tag")}
    segments = {t.get("segment") for t in triggers if t and isinstance(t.get("segment"), int)}
    names = {}
    if tags:
        names.update({("tag", code): name for code, name in Tag.objects.filter(code__in=tags).values_list("code", "name")})
    if segments:
        names.update({("segment", pk): name for pk, name in Segment.objects.filter(pk__in=segments).values_list("pk", "name")})
    tiers = {code for t in triggers if t and t.get("type") == "tier_changed" for code in t.get("to") or []}
    if tiers:
        names.update({("tier", code): label for code, label in TierDefinition.objects.filter(
            scheme__active=True, code__in=tiers).values_list("code", "label")})
    return names


def goal_describe(goal: dict | None) -> str:
    """A journey's goal in words: 「首笔交易（14 天内）」."""
    if not goal:
        return ""
    return _("%(goal)s（%(n)s 天内）") % {"goal": GOALS.get(goal.get("type"), ""), "n": goal.get("within_days")}


def wait_describe(step: dict) -> str:
    if step.get("minutes"):
        minutes = step["minutes"]
        if minutes % 1440 == 0:
            return _("等待 %(n)s 天") % {"n": minutes // 1440}
        if minutes % 60 == 0:
            return _("等待 %(n)s 小时") % {"n": minutes // 60}
        return _("等待 %(n)s 分钟") % {"n": minutes}
    if step.get("until_time"):
        return _("等到 %(time)s") % {"time": step["until_time"]}
    return _("等到下一个交易日 %(time)s") % {"time": step.get("at", "09:00")}


def step_describe(step: dict, templates: dict) -> str:
    kind = step.get("type")
    executor = _("投顾执行") if step.get("executor") == "advisor" else _("系统执行")
    if kind == "wait":
        return wait_describe(step)
    if kind == "branch":
        c = step.get("condition") or {}
        label = BRANCH_LABELS.get(c.get("kind"), "?")
        if c.get("kind") == "replied":
            return _("%(label)s（%(n)s 小时内）") % {"label": label, "n": c.get("within_hours")}
        if c.get("kind") == "tag":
            return _("%(trigger)s：%(what)s") % {"trigger": label, "what": c.get("tag")}
        if c.get("kind") == "ab":
            split = f"A {c.get('percent_a')}% / B {100 - int(c.get('percent_a') or 0)}%"
            return _("%(trigger)s：%(what)s") % {"trigger": label, "what": split}
        return str(label)
    if kind in MESSAGE_STEPS:
        t = templates.get(step.get("template"))
        name = t["name"] if t else _("模板 #%(id)s") % {"id": step.get("template")}
        return f"{name} · {executor}"
    if kind == "task":
        return _("%(title)s（%(n)s 小时内）· %(executor)s") % {"title": step.get("title"), "n": step.get("due_hours"),
                                                          "executor": executor}
    if kind in ("tag_add", "tag_remove"):
        return str(step.get("tag"))
    if kind == "group_invite":
        return _("群 #%(id)s") % {"id": step.get("group")}
    if kind == "webhook":
        return step.get("event", "sop.step")
    return ""


def templates_for_steps(steps: list[dict]) -> dict[int, dict]:
    """Template id → name, channel and its newest approved version (number, body), in two queries."""
    ids = {s.get("template") for s in steps if s.get("type") in MESSAGE_STEPS and isinstance(s.get("template"), int)}
    return template_choices(ids=ids) if ids else {}


def template_choices(*, ids=None, channel: str | None = None) -> dict[int, dict]:
    qs = MessageTemplate.objects.all()
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    if channel:
        qs = qs.filter(channel=channel)
    templates = {t.pk: {"pk": t.pk, "name": t.name, "channel": t.channel, "approved": None}
                 for t in qs.order_by("name", "pk")[:500]}
    approved = (TemplateVersion.objects.filter(template_id__in=templates, status=TemplateVersion.Status.APPROVED)
                .order_by("template_id", "-number").distinct("template_id").values("template_id", "number", "body"))
    for row in approved:
        templates[row["template_id"]]["approved"] = {"number": row["number"], "body": row["body"]}
    return templates


# --- the flow ----------------------------------------------------------------------------------

def flow_order(definition: dict) -> list[str]:
    """Step ids in the order the flow shows them (depth first from the start, then-arm before else-arm)."""
    steps = {s["id"]: s for s in definition.get("steps", []) if isinstance(s, dict) and "id" in s}
    order, seen, stack = [], set(), [definition.get("start")]
    while stack:
        sid = stack.pop()
        if sid not in steps or sid in seen:
            continue
        seen.add(sid)
        order.append(sid)
        stack.extend(reversed(successors(steps[sid])))
    return order + [sid for sid in steps if sid not in seen]


def flow_tree(definition: dict) -> list[dict]:
    """The definition as nested chains for the editor: each node is ``{"step": …, "arms": [...]}`` or
    ``{"goto": id}`` where flows merge into a step already drawn; a branch's arms are drawn side by side."""
    steps = {s["id"]: s for s in definition.get("steps", [])}
    drawn: set[str] = set()

    def chain(sid):
        nodes = []
        while sid:
            if sid in drawn or sid not in steps:
                nodes.append({"goto": sid})
                break
            drawn.add(sid)
            step = steps[sid]
            node = {"step": step, "index": definition["steps"].index(step), "arms": []}
            nodes.append(node)
            if step["type"] == "branch":
                ab = (step.get("condition") or {}).get("kind") == "ab"
                pct = int((step.get("condition") or {}).get("percent_a") or 0)
                labels = ((_("A 组 %(pct)s%%") % {"pct": pct}, _("B 组 %(pct)s%%") % {"pct": 100 - pct}) if ab
                          else (pgettext("branch arm", "是"), pgettext("branch arm", "否")))
                node["arms"] = [{"key": key, "label": label, "chain": chain(step.get(key))}
                                for key, label in zip(("then", "else"), labels, strict=True)]
                break
            sid = step.get("next")
        return nodes

    return chain(definition.get("start"))


# --- the list ----------------------------------------------------------------------------------

def _rate(hits: int, total: int) -> float | None:
    return round(100 * hits / total, 1) if total else None


def journey_list_rows(*, user) -> list[Journey]:
    """Every journey with its counters (in the viewer's scope), in three queries whatever their number."""
    require_sop(user)
    q = scope_for(user).customer_q("enrollments__customer__")
    treated = q & ~Q(enrollments__status=Enrollment.Status.HOLDOUT)
    held = q & Q(enrollments__status=Enrollment.Status.HOLDOUT)
    journeys = list(
        Journey.objects.select_related("live_version", "created_by")
        .annotate(enrolled=Count("enrollments", filter=q),
                  active=Count("enrollments", filter=q & Q(enrollments__status=Enrollment.Status.ACTIVE)),
                  finished=Count("enrollments", filter=q & Q(enrollments__status__in=["completed", "exited"])),
                  treated=Count("enrollments", filter=treated),
                  treated_goal=Count("enrollments", filter=treated & Q(enrollments__goal_met_at__isnull=False)),
                  held=Count("enrollments", filter=held),
                  held_goal=Count("enrollments", filter=held & Q(enrollments__goal_met_at__isnull=False)))
        .order_by("-updated_at", "-pk"))
    touches = {row["enrollment__journey_id"]: row for row in
               StepRun.objects.visible_to(user).filter(step_type__in=list(MESSAGE_STEPS))
               .values("enrollment__journey_id")
               .annotate(sent=Count("pk", filter=Q(status=StepRun.Status.DONE)),
                         blocked=Count("pk", filter=Q(status=StepRun.Status.BLOCKED)))}
    triggers = [(j.live_version.definition if j.live_version else j.draft).get("trigger") or {} for j in journeys]
    names = trigger_names(triggers)
    for journey, trigger in zip(journeys, triggers, strict=True):
        row = touches.get(journey.pk, {})
        journey.sent, journey.blocked = row.get("sent", 0), row.get("blocked", 0)
        journey.trigger_text = trigger_describe(trigger, names)
        journey.treated_rate = _rate(journey.treated_goal, journey.treated)
        journey.held_rate = _rate(journey.held_goal, journey.held)
        journey.has_goal = bool((journey.live_version.definition if journey.live_version else journey.draft).get("goal"))
    return journeys


# --- results -----------------------------------------------------------------------------------

def journey_versions(journey: Journey) -> list[JourneyVersion]:
    return list(journey.versions.order_by("-number"))


REPLY_WINDOW = timedelta(hours=48)


def _replied_after_touch() -> Exists:
    """The client wrote back (an inbound touch) within 48 hours after the step's touch went out."""
    return Exists(Touch.objects.filter(
        customer_id=OuterRef("enrollment__customer_id"), direction=Touch.Direction.IN,
        occurred_at__gt=OuterRef("touch__occurred_at"), occurred_at__lte=OuterRef("touch__occurred_at") + REPLY_WINDOW,
    ).exclude(source__in=Touch.BOOKKEEPING_SOURCES))


def journey_funnel(*, user, version: JourneyVersion) -> list[dict]:
    """Per step of ``version`` in flow order: entered, waiting (due/claimed/failed), done, delivered,
    replied, converted (the enrollment met its goal), blocked by reason, dead; one query."""
    rows = (StepRun.objects.visible_to(user).filter(enrollment__version=version)
            .values("step_id", "status", "block_reason")
            .annotate(n=Count("pk"),
                      sent=Count("pk", filter=Q(touch__status__in=SENT_TOUCH)),
                      delivered=Count("pk", filter=Q(touch__status__in=["delivered", "replied"])),
                      replied=Count("pk", filter=Q(touch__status="replied") | Q(_replied_after_touch())),
                      converted=Count("pk", filter=Q(enrollment__goal_met_at__isnull=False))))
    stats = defaultdict(lambda: {"entered": 0, "waiting": 0, "claimed": 0, "done": 0, "sent": 0, "delivered": 0,
                                 "replied": 0, "converted": 0, "blocked": 0, "blocked_by": {}, "dead": 0,
                                 "failed": 0, "cancelled": 0})
    for row in rows:
        s = stats[row["step_id"]]
        n = row["n"]
        s["entered"] += n
        s["converted"] += row["converted"]
        s["sent"] += row["sent"]
        s["delivered"] += row["delivered"]
        s["replied"] += row["replied"]
        status = row["status"]
        if status in ("due", "failed"):
            s["waiting"] += n
            s["failed"] += n if status == "failed" else 0
        elif status == "claimed":
            s["claimed"] += n
        elif status == "blocked":
            s["blocked"] += n
            s["blocked_by"][row["block_reason"] or "?"] = s["blocked_by"].get(row["block_reason"] or "?", 0) + n
        elif status in ("done", "dead", "cancelled"):
            s[status] += n
    from sop.guards import BLOCK_REASONS

    definition = version.definition
    steps = {s["id"]: s for s in definition["steps"]}
    templates = templates_for_steps(definition["steps"])
    out = []
    for sid in flow_order(definition):
        s = dict(stats[sid])
        s["blocked_by"] = [{"reason": r, "label": str(BLOCK_REASONS.get(r, r)), "n": n}
                           for r, n in sorted(s["blocked_by"].items(), key=lambda kv: -kv[1])]
        out.append({"id": sid, "type": steps[sid]["type"], "label": STEP_LABELS.get(steps[sid]["type"], ""),
                    "summary": step_describe(steps[sid], templates), "is_message": steps[sid]["type"] in MESSAGE_STEPS,
                    **s})
    return out


def step_counters(*, user, version: JourneyVersion | None) -> dict[str, dict]:
    """The live counters shown on the editor's step cards."""
    if version is None:
        return {}
    return {row["id"]: row for row in journey_funnel(user=user, version=version)}


def two_proportion_p(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the two-proportion z-test (pooled); None when it is not defined."""
    if not n_a or not n_b:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None
    z = (hits_a / n_a - hits_b / n_b) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _compare(first: dict, second: dict) -> dict:
    for g in (first, second):
        g["rate"] = _rate(g["goal"], g["enrolled"])
    diff = round(first["rate"] - second["rate"], 1) if first["rate"] is not None and second["rate"] is not None else None
    p = two_proportion_p(first["goal"], first["enrolled"], second["goal"], second["enrolled"])
    return {"diff": diff, "p": round(p, 4) if p is not None else None, "significant": p is not None and p < 0.05}


def journey_ab(*, user, version: JourneyVersion) -> dict | None:
    """Variant A vs B (Enrollment.variant, named by the first A/B split a client meets), or None when the
    version has no A/B branch."""
    if not any((s.get("condition") or {}).get("kind") == "ab" for s in version.definition["steps"]):
        return None
    rows = (Enrollment.objects.visible_to(user).filter(version=version, variant__in=["A", "B"])
            .values("variant").annotate(enrolled=Count("pk"), goal=Count("pk", filter=Q(goal_met_at__isnull=False))))
    groups = {v: {"enrolled": 0, "goal": 0} for v in "AB"}
    for row in rows:
        groups[row["variant"]] = {"enrolled": row["enrolled"], "goal": row["goal"]}
    return {"a": groups["A"], "b": groups["B"], **_compare(groups["A"], groups["B"])}


def journey_holdout(*, user, version: JourneyVersion) -> dict:
    """Treatment (everyone who got the steps) vs hold-out (status ``holdout``: entered, no steps) and the uplift
    of the goal rate in percentage points (and relative)."""
    rows = (Enrollment.objects.visible_to(user).filter(version=version)
            .values(held=ExpressionWrapper(Q(status=Enrollment.Status.HOLDOUT), output_field=BooleanField()))
            .annotate(enrolled=Count("pk"), goal=Count("pk", filter=Q(goal_met_at__isnull=False))))
    groups = {True: {"enrolled": 0, "goal": 0}, False: {"enrolled": 0, "goal": 0}}
    for row in rows:
        groups[row["held"]] = {"enrolled": row["enrolled"], "goal": row["goal"]}
    result = {"treatment": groups[False], "holdout": groups[True], **_compare(groups[False], groups[True]),
              "percent": int(version.definition.get("holdout_percent") or 0)}
    h = groups[True]["rate"]
    result["relative"] = round(100 * result["diff"] / h, 1) if result["diff"] is not None and h else None
    goal = version.definition.get("goal") or {}
    result["goal_text"] = goal_describe(goal)
    return result


def journey_enrollments(*, user, version: JourneyVersion, status: str = ""):
    """Enrollments of the version in the viewer's scope, newest first, with the step each is on."""
    current = StepRun.objects.filter(enrollment=OuterRef("pk")).order_by("-pk")
    qs = (Enrollment.objects.visible_to(user).filter(version=version).select_related("customer")
          .annotate(current_step=Subquery(current.values("step_id")[:1]),
                    current_status=Subquery(current.values("status")[:1]))
          .order_by("-entered_at", "-pk"))
    if status in Enrollment.Status.values:
        qs = qs.filter(status=status)
    return qs


def journey_dead_letters(*, user, journey: Journey, limit: int = 100) -> list[StepRun]:
    return list(StepRun.objects.visible_to(user).filter(enrollment__journey=journey, status=StepRun.Status.DEAD)
                .select_related("enrollment__customer", "enrollment__version").order_by("-finished_at", "-pk")[:limit])


def step_run_get_for_user(*, user, step_run_id: int) -> StepRun:
    require_sop(user)
    run = StepRun.objects.visible_to(user).select_related("enrollment__journey").filter(pk=step_run_id).first()
    if run is None:
        raise Http404("no such step run")
    return run


# --- message templates and their approval (sop/views_content.py, sop/views_compliance.py) -----------

def template_rows():
    """Every template with its latest version's number and status and the version journeys send."""
    latest = TemplateVersion.objects.filter(template=OuterRef("pk")).order_by("-number")
    approved = latest.filter(status=TemplateVersion.Status.APPROVED)
    labels = dict(TemplateVersion.Status.choices)
    templates = (MessageTemplate.objects.annotate(
        latest_number=Subquery(latest.values("number")[:1]), latest_status=Subquery(latest.values("status")[:1]),
        approved_number=Subquery(approved.values("number")[:1])).order_by("name", "pk"))
    return [{"t": t, "status_label": labels.get(t.latest_status, "—")} for t in templates]


def approval_queue(*, user) -> list[dict]:
    """Versions waiting for compliance, oldest first, each with today's lint, the version in use before it
    and the text one client would receive; a fixed number of queries whatever the queue's length."""
    from sop.templates_lint import compliance_wordings, preview_customer, template_lint, template_preview
    from tagging.tiers import tier_definitions

    pending = list(TemplateVersion.objects.filter(status=TemplateVersion.Status.PENDING)
                   .select_related("template", "product", "created_by").order_by("created_at", "pk"))
    approved: dict[int, list] = defaultdict(list)
    for v in (TemplateVersion.objects.filter(template_id__in={p.template_id for p in pending},
                                             status=TemplateVersion.Status.APPROVED).order_by("number")):
        approved[v.template_id].append(v)
    customer = preview_customer(user) if pending else None
    wordings = compliance_wordings()
    tier_labels = {c: d.label for c, d in tier_definitions().items()} if pending else {}
    items = []
    for v in pending:
        findings = template_lint(v.body, v.product, wordings=wordings)
        previous = next((a for a in reversed(approved[v.template_id]) if a.number < v.number), None)
        sample = {} if findings else template_preview(
            body=v.body, product=v.product, user=user, customer=customer, wordings=wordings, tier_labels=tier_labels)
        items.append({"v": v, "findings": findings, "previous": previous, "sample": sample,
                      "own": v.created_by_id == user.pk})
    return items
