"""SOP 旅程 pages: the list, create, the flow editor (htmx: a step's form opens inside its card, a save answers
the whole editor, an invalid save answers the form with the error on the field its path names and saves
nothing), the raw JSON editor, publish / pause / resume / archive, the dry run and the results.

Operators and admins use them (nav key ``sop``); everyone else gets 404. Client-level numbers and lists are
cut to the viewer's data scope by sop/selectors.py.
"""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget

from core.errors import ApplicationError
from core.forms import form_add_application_error
from sop import selectors, services
from sop.definition import MESSAGE_STEPS, STEP_TYPES, DefinitionError
from sop.forms import PATH_FIELDS, DefinitionJsonForm, DryRunForm, JourneyCreateForm, SettingsForm, StepForm, TriggerForm
from sop.models import Enrollment, Journey

NEW_JOURNEY_FIRST_STEP = {"id": "wait_1", "type": "wait", "minutes": 60}
ADDABLE = ["wait", "sms", "app_push", "wecom_message", "wecom_group_message", "task", "branch", "tag_add", "tag_remove",
           "group_invite", "webhook"]


# --- choices the forms offer ----------------------------------------------------------------------

def _tags():
    from tagging.models import Tag

    return list(Tag.objects.filter(active=True).order_by("code").values_list("code", "name"))


def _segments(user):
    from segments.selectors import segments_visible_to

    return list(segments_visible_to(user).filter(archived=False).order_by("name").values_list("pk", "name")[:500])


def _tiers():
    from tagging.tiers import tier_definitions

    return [(code, d.label) for code, d in tier_definitions().items()]


def _trigger_form(user, data=None, initial=None, cls=TriggerForm):
    return cls(data, initial=initial, tags=_tags(), segments=_segments(user), tiers=_tiers())


def _step_form(user, step_type, data=None, initial=None):
    from groups.models import GroupChat

    kwargs = {}
    if step_type in MESSAGE_STEPS:
        kwargs["templates"] = selectors.template_choices(channel=MESSAGE_STEPS[step_type])
    if step_type in ("tag_add", "tag_remove", "branch"):
        kwargs["tags"] = _tags()
    if step_type == "branch":
        kwargs["segments"] = _segments(user)
    if step_type in ("wecom_group_message", "group_invite"):
        active = GroupChat.objects.filter(status=GroupChat.Status.ACTIVE).order_by("name")[:500]
        kwargs["groups"] = [(g.chat_id, g.name) for g in active]
        kwargs["invite_groups"] = [(str(g.pk), g.name) for g in active]
    return StepForm(data, initial=initial, step_type=step_type, **kwargs)


def _error_text(exc: ApplicationError, definition: dict | None = None) -> str:
    """「步骤 wait_2（$.steps[1].minutes）：应为 …」 for a definition error, else the message."""
    if isinstance(exc, DefinitionError):
        message = exc.details[0]["message"] if exc.details else exc.message
        step = _step_of_path(exc.path, definition)
        where = _("步骤 %(id)s（%(path)s）") % {"id": step, "path": exc.path} if step else exc.path
        return f"{where}：{message}"
    return exc.message


def _step_of_path(path: str, definition: dict | None) -> str | None:
    if not definition or not path.startswith("$.steps["):
        return None
    try:
        index = int(path[len("$.steps["):path.index("]")])
        return definition["steps"][index]["id"]
    except (ValueError, IndexError, KeyError, TypeError):
        return None


# --- list and create ------------------------------------------------------------------------------

@login_required
def journey_list(request):
    rows = selectors.journey_list_rows(user=request.user)
    return render(request, "sop/journeys/list.html", {"journeys": rows})


@login_required
def journey_create(request):
    selectors.require_sop(request.user)
    form = _trigger_form(request.user, request.POST or None, initial={"trigger_type": "manual"}, cls=JourneyCreateForm)
    if request.method == "POST" and form.is_valid():
        definition = {"trigger": form.trigger(), "start": NEW_JOURNEY_FIRST_STEP["id"], "steps": [NEW_JOURNEY_FIRST_STEP]}
        try:
            journey = services.journey_create(actor=request.user, name=form.cleaned_data["name"],
                                              description=form.cleaned_data["description"], definition=definition)
        except DefinitionError as exc:
            form.add_error(PATH_TRIGGER.get(exc.path.rsplit(".", 1)[-1], None), _error_text(exc))
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("旅程已创建：从一个「等待 1 小时」步骤开始，点击步骤修改，点 + 添加步骤。"))
            return redirect("sop:journey_edit", sop_journey_id=journey.pk)
    return render(request, "sop/journeys/create.html", {"form": form}, status=400 if form.errors else 200)


PATH_TRIGGER = {"type": "trigger_type", "tag": "tag", "segment": "segment", "stage": "stage", "hours": "hours",
                "field": "field", "days_before": "days_before", "at": "at", "days": "days", "to": "to"}


def _field_for(path: str, form) -> str | None:
    """The form field a definition path points at (``$.steps[2].condition.tag`` → cond_tag), if the form has it."""
    leaf = path.rsplit(".", 1)[-1]
    candidates = []
    if path.startswith("$.goal."):
        candidates.append(f"goal_{leaf}")
    if path.startswith("$.entry_rule"):
        candidates.append("entry")
    if ".condition." in path:
        candidates += ["cond_tag" if leaf == "tag" else leaf, "rule_json"]
    candidates += [PATH_FIELDS.get(leaf) or leaf, PATH_TRIGGER.get(leaf) or leaf]
    return next((c for c in candidates if c in form.fields), None)


# --- the editor -----------------------------------------------------------------------------------

def _cards(tree, templates, counters, error_step=None):
    """Attach what each card shows (label, summary, template preview, live counters) to the flow tree."""
    for node in tree:
        step = node.get("step")
        if step is None:
            continue
        template = templates.get(step.get("template")) if step["type"] in MESSAGE_STEPS else None
        node["card"] = {"label": selectors.STEP_LABELS.get(step["type"], step["type"]),
                        "summary": selectors.step_describe(step, templates),
                        "preview": (template or {}).get("approved"), "template_missing": template is not None and
                        not template["approved"], "counters": counters.get(step["id"]), "error": step["id"] == error_step,
                        "is_message": step["type"] in MESSAGE_STEPS}
        for arm in node["arms"]:
            _cards(arm["chain"], templates, counters, error_step)
    return tree


def _editor_context(request, journey: Journey, **extra) -> dict:
    draft = journey.draft
    templates = selectors.templates_for_steps(draft.get("steps", []))
    counters = selectors.step_counters(user=request.user, version=journey.live_version)
    names = selectors.trigger_names([draft.get("trigger") or {}, *([{"segment": _entry_segment(draft)}]
                                                                   if _entry_segment(draft) else [])])
    goal = draft.get("goal") or {}

    return {
        "journey": journey, "tree": _cards(selectors.flow_tree(draft), templates, counters),
        "trigger_text": selectors.trigger_describe(draft.get("trigger") or {}, names),
        "entry_text": (names.get(("segment", _entry_segment(draft)), _("自定义规则")) if draft.get("entry_rule") else ""),
        "goal_text": selectors.goal_describe(goal),
        "holdout": draft.get("holdout_percent") or 0,
        "draft_differs": journey.live_version is not None and journey.live_version.definition != draft,
        "editable": journey.status != Journey.Status.ARCHIVED, "step_types": [(t, selectors.STEP_LABELS[t]) for t in ADDABLE],
        **extra,
    }


def _entry_segment(draft):
    from sop.forms import _single_segment

    return _single_segment(draft.get("entry_rule"))


def _journey(request, journey_id, *, editable=False) -> Journey:
    journey = selectors.journey_get_for_user(user=request.user, journey_id=journey_id)
    if editable and journey.status == Journey.Status.ARCHIVED:
        raise Http404("archived journeys are read-only")
    return journey


def _editor_answer(request, journey):
    response = render(request, "sop/journeys/partials/editor_body.html", _editor_context(request, journey))
    return reswap(retarget(response, "#journey-editor"), "outerHTML")


@login_required
def journey_edit(request, sop_journey_id):
    journey = _journey(request, sop_journey_id)
    return render(request, "sop/journeys/editor.html", _editor_context(request, journey))


@login_required
def journey_flow(request, sop_journey_id):
    """The editor body alone (the forms' 取消 reloads it)."""
    journey = _journey(request, sop_journey_id)
    return render(request, "sop/journeys/partials/editor_body.html", _editor_context(request, journey))


def _save(request, journey, definition, form, *, template, context, **save_kwargs):
    """Save through the service; on a definition error put it on the field its path names (or on the form)
    and answer the form again with 400 — nothing stored changes."""
    try:
        services.journey_draft_save(actor=request.user, journey=journey, definition=definition, **save_kwargs)
    except DefinitionError as exc:
        field = _field_for(exc.path, form)
        text = _error_text(exc, definition)
        form.add_error(None, text)
        if field in form.fields:
            form.add_error(field, exc.details[0]["message"] if exc.details else exc.message)
        return render(request, template, {**context, "form": form, "error_path": exc.path}, status=400)
    except ApplicationError as exc:
        form_add_application_error(form, exc)
        return render(request, template, {**context, "form": form}, status=400)
    journey.refresh_from_db()
    return _editor_answer(request, journey)


@login_required
def journey_step(request, sop_journey_id, sop_step_id):
    """GET: the step's form inside its card; POST: save it."""
    journey = _journey(request, sop_journey_id, editable=request.method == "POST")
    step = next((s for s in journey.draft.get("steps", []) if s.get("id") == sop_step_id), None)
    if step is None:
        raise Http404("no such step")
    context = {"journey": journey, "step": step, "step_type": step["type"],
               "type_label": selectors.STEP_LABELS.get(step["type"], step["type"]),
               "action": request.path, "deletable": len(journey.draft["steps"]) > 1}
    if request.method != "POST":
        form = _step_form(request.user, step["type"], initial=StepForm.initial_from(step))
        return render(request, "sop/journeys/partials/step_form.html", {**context, "form": form})
    form = _step_form(request.user, step["type"], request.POST)
    if not form.is_valid():
        return render(request, "sop/journeys/partials/step_form.html", {**context, "form": form}, status=400)
    definition = services.definition_step_replace(journey.draft, step=form.step(step["id"]))
    return _save(request, journey, definition, form, template="sop/journeys/partials/step_form.html", context=context)


@login_required
def journey_step_new(request, sop_journey_id):
    """GET without ``type``: the step types to pick; with it: the new step's form. POST: insert it after
    step ``after`` on ``arm`` (next / then / else), or first when ``after`` is empty."""
    journey = _journey(request, sop_journey_id, editable=True)
    params = request.POST if request.method == "POST" else request.GET
    after, arm, step_type = params.get("after", ""), params.get("arm", "next"), params.get("type", "")
    slot = params.get("slot", "")
    context = {"journey": journey, "after": after, "arm": arm, "slot": slot, "new": True,
               "step_types": [(t, selectors.STEP_LABELS[t]) for t in ADDABLE]}
    if step_type not in STEP_TYPES:
        return render(request, "sop/journeys/partials/step_types.html", context)
    context.update(step_type=step_type, type_label=selectors.STEP_LABELS.get(step_type, step_type),
                   action=request.path)
    if request.method != "POST":
        initial = {"wait_mode": "minutes", "wait_value": 1, "wait_unit": "1440", "executor": "system", "percent_a": 50,
                   "kind": "replied", "within_hours": 24, "due_hours": 24, "event": "sop.step", "at": "09:00"}
        return render(request, "sop/journeys/partials/step_form.html",
                      {**context, "form": _step_form(request.user, step_type, initial=initial)})
    form = _step_form(request.user, step_type, request.POST)
    if not form.is_valid():
        return render(request, "sop/journeys/partials/step_form.html", {**context, "form": form}, status=400)
    step = form.step(services.step_id_new(journey.draft, step_type))
    try:
        definition = services.definition_step_insert(journey.draft, step=step, after=after, arm=arm)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return render(request, "sop/journeys/partials/step_form.html", {**context, "form": form}, status=400)
    return _save(request, journey, definition, form, template="sop/journeys/partials/step_form.html", context=context)


@login_required
@require_POST
def journey_step_delete(request, sop_journey_id, sop_step_id):
    journey = _journey(request, sop_journey_id, editable=True)
    if not any(s.get("id") == sop_step_id for s in journey.draft.get("steps", [])):
        raise Http404("no such step")
    definition = services.definition_step_delete(journey.draft, step_id=sop_step_id)
    try:
        services.journey_draft_save(actor=request.user, journey=journey, definition=definition)
    except ApplicationError as exc:
        response = render(request, "sop/journeys/partials/notice.html",
                          {"error": _("未删除：%(e)s") % {"e": _error_text(exc, definition)}}, status=400)
        return reswap(retarget(response, "#editor-notice"), "innerHTML")
    journey.refresh_from_db()
    return _editor_answer(request, journey)


@login_required
def journey_trigger(request, sop_journey_id):
    journey = _journey(request, sop_journey_id, editable=request.method == "POST")
    context = {"journey": journey}
    if request.method != "POST":
        form = _trigger_form(request.user, initial=TriggerForm.initial_from(journey.draft.get("trigger")))
        return render(request, "sop/journeys/partials/trigger_form.html", {**context, "form": form})
    form = _trigger_form(request.user, request.POST)
    if not form.is_valid():
        return render(request, "sop/journeys/partials/trigger_form.html", {**context, "form": form}, status=400)
    definition = {**journey.draft, "trigger": form.trigger()}
    return _save(request, journey, definition, form, template="sop/journeys/partials/trigger_form.html", context=context)


@login_required
def journey_settings(request, sop_journey_id):
    """Name, description, entry rule (a saved segment or none), goal and hold-out."""
    journey = _journey(request, sop_journey_id, editable=request.method == "POST")
    initial, custom = SettingsForm.initial_from(journey)
    kwargs = {"segments": _segments(request.user), "tags": _tags(), "custom_rule": custom}
    context = {"journey": journey}
    if request.method != "POST":
        return render(request, "sop/journeys/partials/settings_form.html",
                      {**context, "form": SettingsForm(initial=initial, **kwargs)})
    form = SettingsForm(request.POST, **kwargs)
    if not form.is_valid():
        return render(request, "sop/journeys/partials/settings_form.html", {**context, "form": form}, status=400)
    return _save(request, journey, form.apply(journey.draft), form, template="sop/journeys/partials/settings_form.html",
                 context=context, name=form.cleaned_data["name"], description=form.cleaned_data["description"])


@login_required
def journey_json(request, sop_journey_id):
    """The definition as JSON, for power users; saved through the same validator."""
    journey = _journey(request, sop_journey_id, editable=request.method == "POST")
    initial = {"definition": json.dumps(journey.draft, ensure_ascii=False, indent=2)}
    form = DefinitionJsonForm(request.POST or None, initial=initial)
    error = None
    if request.method == "POST" and form.is_valid():
        definition = form.cleaned_data["definition"]
        try:
            services.journey_draft_save(actor=request.user, journey=journey, definition=definition)
        except ApplicationError as exc:
            error = {"text": _error_text(exc, definition if isinstance(definition, dict) else None),
                     "path": getattr(exc, "path", "")}
        else:
            messages.success(request, _("定义已保存到草稿"))
            return redirect("sop:journey_edit", sop_journey_id=journey.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "sop/journeys/json.html", {"journey": journey, "form": form, "error": error}, status=status)


# --- publish and status ---------------------------------------------------------------------------

@login_required
@require_POST
def journey_publish(request, sop_journey_id):
    journey = _journey(request, sop_journey_id)
    try:
        version = services.journey_publish(actor=request.user, journey=journey)
    except ApplicationError as exc:
        messages.error(request, _("未发布：%(e)s") % {"e": _error_text(exc, journey.draft)})
    else:
        messages.success(request, _("已发布第 %(n)s 版，旅程运行中；已进入的客户按原版本走完。") % {"n": version.number})
    return redirect("sop:journey_edit", sop_journey_id=journey.pk)


STATUS_WORDS = {"paused": gettext_lazy("暂停"), "live": gettext_lazy("恢复"), "archived": gettext_lazy("归档")}


@login_required
@require_POST
def journey_status(request, sop_journey_id):
    journey = _journey(request, sop_journey_id)
    status = request.POST.get("status", "")
    if status not in STATUS_WORDS:
        messages.error(request, _("未知操作"))
    else:
        try:
            services.journey_set_status(actor=request.user, journey=journey, status=status)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("旅程已%(w)s") % {"w": STATUS_WORDS[status]})
    return redirect("sop:journey_edit", sop_journey_id=journey.pk)


# --- dry run and results --------------------------------------------------------------------------

@login_required
def journey_dry_run(request, sop_journey_id):
    from customers.models import Customer
    from segments.selectors import segment_get_for_user
    from sop.guards import BLOCK_REASONS

    journey = _journey(request, sop_journey_id)
    form = DryRunForm(request.GET or None, segments=_segments(request.user))
    result, error = None, None
    if form.is_bound and form.is_valid():
        segment = segment_get_for_user(request.user, form.cleaned_data["segment"])
        customers = Customer.objects.visible_to(request.user).filter(segment_memberships__segment=segment)
        try:
            result = services.journey_dry_run(definition=journey.draft, customers=customers, journey=journey)
        except ApplicationError as exc:
            error = _error_text(exc, journey.draft)
        else:
            steps = {s["id"]: s for s in journey.draft["steps"]}
            templates = selectors.templates_for_steps(journey.draft["steps"])
            for row in result["steps"]:
                row["summary"] = selectors.step_describe(steps[row["step"]], templates)
                row["label"] = selectors.STEP_LABELS.get(steps[row["step"]]["type"], "")
                row["blocked_list"] = [{"label": str(BLOCK_REASONS.get(r, r)), "reason": r, "n": n}
                                       for r, n in sorted(row["blocked"].items(), key=lambda kv: -kv[1])]
    return render(request, "sop/journeys/dry_run.html", {"journey": journey, "form": form, "result": result, "error": error})


@login_required
def journey_results(request, sop_journey_id):
    journey = _journey(request, sop_journey_id)
    versions = selectors.journey_versions(journey)
    version = journey.live_version or (versions[0] if versions else None)
    wanted = request.GET.get("version", "")
    if wanted.isdigit():
        version = next((v for v in versions if v.number == int(wanted)), None) or version
    context = {"journey": journey, "versions": versions, "version": version}
    if version is not None:
        funnel = selectors.journey_funnel(user=request.user, version=version)
        status = request.GET.get("status", "")
        page = Paginator(selectors.journey_enrollments(user=request.user, version=version, status=status), 50) \
            .get_page(request.GET.get("page"))
        context.update(
            funnel=funnel, ab=selectors.journey_ab(user=request.user, version=version),
            holdout=selectors.journey_holdout(user=request.user, version=version),
            page=page, status=status, statuses=Enrollment.Status.choices, chart_height=90 + 56 * len(funnel),
            dead=selectors.journey_dead_letters(user=request.user, journey=journey),
            chart={"steps": [f"{r['id']} · {r['label']}" for r in funnel],
                   "entered": [r["entered"] for r in funnel], "done": [r["done"] for r in funnel],
                   "blocked": [r["blocked"] for r in funnel], "converted": [r["converted"] for r in funnel]})
    return render(request, "sop/journeys/results.html", context)


@login_required
@require_POST
def step_run_retry(request, sop_step_run_id):
    run = selectors.step_run_get_for_user(user=request.user, step_run_id=sop_step_run_id)
    try:
        services.step_run_retry(actor=request.user, step_run=run)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("已重新排队：步骤 %(s)s 将由调度器尽快执行") % {"s": run.step_id})
    return redirect(f"{_results_url(run)}#dead-letters")


def _results_url(run) -> str:
    from django.urls import reverse

    return reverse("sop:journey_results", kwargs={"sop_journey_id": run.enrollment.journey_id}) + \
        f"?version={run.enrollment.version.number}"
