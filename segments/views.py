"""客群 pages: the list, the rule builder (htmx: every edit posts the tree and one operation and gets the
builder and the live preview back), and the rule schema. The detail page and what is done on it (rebuild,
snapshots, diff, exports, bulk actions, archive) are in views_detail.py.

Operators, branch and HQ managers and admins use them (nav key ``segments``); everyone else gets 404.
What a viewer sees of a segment — counts, samples, members — is cut to their data scope by the selectors.
"""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.access import may
from core.errors import ApplicationError
from segments import builder, selectors, services
from segments import rules as rule_lang
from segments.forms import SegmentForm

EXAMPLE_RULE = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}
PREVIEW_SAMPLE = 10


def require_segments(user) -> None:
    if not may(user, "segments"):
        raise Http404("segments are not available for this role")


# --- list ---------------------------------------------------------------------------------------

@login_required
def segment_list(request):
    require_segments(request.user)
    archived = request.GET.get("archived") == "1"
    segments = selectors.segment_list(request.user, archived=archived)
    for segment in segments:
        segment.sparkline = json.dumps([size for _day, size in segment.size_trend])
    return render(request, "segments/list.html", {"segments": segments, "archived": archived})


# --- builder ------------------------------------------------------------------------------------

def _tree_from_post(post) -> tuple[dict, str | None]:
    """The tree as the page shows it: the hidden JSON with the editors' values written over it."""
    try:
        tree = json.loads(post.get("rule") or "null")
    except ValueError:
        tree = None
    if not isinstance(tree, dict):
        tree = json.loads(json.dumps(builder.EMPTY_RULE))
    try:
        return builder.apply_fields(tree, builder.fields_from_post(post)), None
    except builder.BuilderError as exc:
        return tree, str(exc)


def _preview(tree: dict, user) -> dict:
    """Preview context: counts and sample, or the error with the path of the bad node (in the tree shown).
    Groups without a condition yet count for nothing."""
    rule, paths = builder.rule_effective(tree)
    if builder.is_group(rule) and not rule.get("rules"):
        return {"empty": True}
    try:
        result = selectors.rule_preview(rule, principal=user, sample_size=PREVIEW_SAMPLE)
    except rule_lang.RuleError as exc:
        return {"error": exc.details[0]["message"] if exc.details else exc.message,
                "error_path": builder.error_path_in_tree(exc.path, paths)}
    except ApplicationError as exc:
        return {"error": exc.message, "error_path": builder.error_path_in_tree(getattr(exc, "path", None), paths)}
    chart = {"tiers": [{"label": str(r["label"]), "count": r["count"]} for r in result.get("by_tier", [])],
             "branches": [{"label": str(r["name"]), "count": r["count"]} for r in result.get("by_branch", [])]}
    return {"result": result, "chart": chart}


def _builder_context(request, *, tree, segment=None, error_path=None, error=None, form=None) -> dict:
    preview = _preview(tree, request.user)
    error_path = error_path or preview.get("error_path")
    return {
        "tree": builder.render_nodes(tree, principal=request.user, error_path=error_path,
                                     exclude_segment_id=segment.pk if segment else None),
        "rule_json": json.dumps(tree, ensure_ascii=False),
        "preview": preview, "segment": segment, "builder_error": error,
        "error_message": preview.get("error") or error,
        "form": form or SegmentForm(initial={"name": segment.name if segment else "",
                                             "description": segment.description if segment else ""}),
    }


@login_required
@require_POST
def builder_update(request):
    """One builder edit: apply the posted editors, then ``op`` = "operation|path"; answer the builder
    and, out of band, the preview."""
    require_segments(request.user)
    tree, error = _tree_from_post(request.POST)
    operation, _sep, path = (request.POST.get("op") or "").partition("|")
    if operation and not error:
        try:
            tree = builder.apply_operation(tree, operation, path or "$")
        except builder.BuilderError as exc:
            error = str(exc)
    segment = None
    if (request.POST.get("segment_id") or "").isdigit():
        segment = selectors.segment_get_for_user(request.user, int(request.POST["segment_id"]))
    context = _builder_context(request, tree=tree, segment=segment, error=error)
    return render(request, "segments/partials/builder_response.html", context, status=400 if error else 200)


def _save(request, segment=None):
    form = SegmentForm(request.POST)
    tree, error = _tree_from_post(request.POST)
    if error or not form.is_valid():
        context = _builder_context(request, tree=tree, segment=segment, error=error, form=form)
        return render(request, "segments/builder.html", context, status=400)
    rule, paths = builder.rule_effective(tree)  # a group left without conditions is not saved
    try:
        if segment is None:
            # a branch manager's segment belongs to their branch (the service decides), anyone else's is firm-wide
            segment = services.segment_create(actor=request.user, name=form.cleaned_data["name"], rule=rule,
                                              description=form.cleaned_data["description"])
        else:
            services.segment_update(actor=request.user, segment=segment, name=form.cleaned_data["name"], rule=rule,
                                    description=form.cleaned_data["description"])
    except rule_lang.RuleError as exc:
        context = _builder_context(request, tree=tree, segment=segment, form=form,
                                   error_path=builder.error_path_in_tree(exc.path, paths),
                                   error=_("规则有误，未保存：%(m)s") % {"m": exc.message})
        return render(request, "segments/builder.html", context, status=400)
    except ApplicationError as exc:
        message = exc.message
        for detail in getattr(exc, "details", None) or []:
            if isinstance(detail, dict) and detail.get("field") in form.fields:
                form.add_error(detail["field"], detail.get("message") or message)
        context = _builder_context(request, tree=tree, segment=segment, form=form, error=message)
        return render(request, "segments/builder.html", context, status=getattr(exc, "status_code", 403))
    messages.success(request, _("客群已保存"))
    return redirect("segments:detail", segment_id=segment.pk)


@login_required
def segment_create(request):
    require_segments(request.user)
    if request.method == "POST":
        return _save(request)
    return render(request, "segments/builder.html", _builder_context(request, tree=EXAMPLE_RULE))


@login_required
def segment_edit(request, segment_id: int):
    require_segments(request.user)
    segment = selectors.segment_get_for_user(request.user, segment_id)
    if request.method == "POST":
        return _save(request, segment)
    return render(request, "segments/builder.html", _builder_context(request, tree=segment.rule, segment=segment))


@login_required
def rule_schema(request):
    require_segments(request.user)
    from segments.rule_schema import RULE_JSON_SCHEMA

    return JsonResponse(RULE_JSON_SCHEMA, json_dumps_params={"ensure_ascii": False, "indent": 2})
