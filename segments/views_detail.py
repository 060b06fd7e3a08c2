"""The 客群 detail page and what is done from it: 立即重算, 冻结快照, diff, exports (polled by htmx until
done, downloaded through the audited ``export_file_for_user``), bulk actions and archive."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from core.forms import form_add_application_error
from core.scoping import scope_for
from segments import builder, selectors, services
from segments.forms import ActionForm, ExportForm, SnapshotForm
from segments.views import require_segments

MEMBERS_PER_PAGE = 20


def _segment(request, segment_id: int):
    require_segments(request.user)
    return selectors.segment_get_for_user(request.user, segment_id)


def _duration(ms) -> str:
    if ms is None:
        return "—"
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _members_page(request, segment):
    from tagging.tiers import annotate_tier

    members = annotate_tier(selectors.segment_members(segment, principal=request.user)
                            .select_related("branch", "advisor")).order_by("id")
    return Paginator(members, MEMBERS_PER_PAGE).get_page(request.GET.get("page"))


def detail_context(request, segment, **extra) -> dict:
    rebuilds = selectors.segment_rebuilds(segment)
    for rebuild in rebuilds:
        rebuild.duration_label = _duration(rebuild.duration_ms)
    snapshots = list(selectors.segment_snapshots(segment, principal=request.user))
    trend = selectors.segment_size_trend(segment, days=90, principal=request.user)
    return {
        "segment": segment, "summary": builder.rule_summary(segment.rule),
        "firm_wide": scope_for(request.user).everything,
        "visible_size": selectors.segment_visible_size(segment, principal=request.user),
        "rule_json": json.dumps(segment.rule, ensure_ascii=False, indent=2),
        "members": _members_page(request, segment), "rebuilds": rebuilds, "snapshots": snapshots,
        # the template's json_script encodes it (a json.dumps string here came out as one JSON string, not an object)
        "trend": {"days": [d.isoformat() for d, _s in trend], "sizes": [s for _d, s in trend]},
        "exports": selectors.segment_exports_for_user(request.user, segment),
        "actions": selectors.segment_actions(segment),
        "snapshot_form": extra.pop("snapshot_form", None) or SnapshotForm(),
        "export_form": extra.pop("export_form", None) or ExportForm(snapshots=snapshots),
        "action_form": extra.pop("action_form", None) or ActionForm(user=request.user),
        **extra,
    }


@never_cache
@login_required
def segment_detail(request, segment_id: int):
    segment = _segment(request, segment_id)
    rebuilding = request.GET.get("rebuilding") or ""
    extra = {"rebuilding": {"after": int(rebuilding), "polls": 0}} if rebuilding.isdigit() else {}
    return render(request, "segments/detail.html", detail_context(request, segment, **extra))


@login_required
@require_POST
def segment_rebuild(request, segment_id: int):
    """立即重算: queue it, then the detail page waits for it (``?rebuilding=<the newest rebuild before it>``)."""
    segment = _segment(request, segment_id)
    after = selectors.segment_last_rebuild_id(segment)
    try:
        services.segment_rebuild_request(actor=request.user, segment=segment)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("segments:detail", segment_id=segment.pk)
    return redirect(reverse("segments:detail", args=[segment.pk]) + f"?rebuilding={after}")


REBUILD_POLLS = 180  # about three minutes of polling once a second; then the page says to come back later


@never_cache
@login_required
def segment_rebuild_status(request, segment_id: int):
    """The 立即重算 indicator, polled by htmx: while the rebuild is queued or running it answers itself again; once
    it is over the page is reloaded (HX-Redirect) to show the new count, members and history."""
    segment = _segment(request, segment_id)
    after = int(request.GET.get("after") or 0) if (request.GET.get("after") or "0").isdigit() else 0
    polls = int(request.GET.get("polls") or 0) if (request.GET.get("polls") or "0").isdigit() else 0
    outcome = selectors.segment_rebuild_outcome(segment, after=after)
    if outcome is not None:
        if outcome.status == outcome.Status.FAILED:
            messages.error(request, _("重算失败：%(e)s") % {"e": outcome.error[:200]})
        else:
            messages.success(request, _("重算完成"))
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("segments:detail", args=[segment.pk])
        return response
    return render(request, "segments/partials/rebuild_status.html",
                  {"segment": segment, "after": after, "polls": polls + 1, "gave_up": polls + 1 >= REBUILD_POLLS})


@login_required
@require_POST
def snapshot_create(request, segment_id: int):
    segment = _segment(request, segment_id)
    form = SnapshotForm(request.POST)
    if form.is_valid():
        try:
            snapshot = services.snapshot_create(actor=request.user, segment=segment, name=form.cleaned_data["name"])
        except ApplicationError as exc:
            form.add_error("name", exc.message)
        else:
            size = snapshot.size if scope_for(request.user).everything else \
                selectors.snapshot_members(snapshot, principal=request.user).count()
            messages.success(request, _("已冻结快照「%(n)s」，共 %(c)s 人") % {"n": snapshot.name, "c": size})
            return redirect("segments:detail", segment_id=segment.pk)
    return render(request, "segments/detail.html", detail_context(request, segment, snapshot_form=form), status=400)


def _diff_side(snapshots, raw: str | None):
    """A side of the diff: None for the live rule, else one of the segment's ``snapshots`` (404 otherwise)."""
    if raw in (None, "", "live"):
        return None
    snapshot = next((s for s in snapshots if str(s.pk) == raw), None)
    if snapshot is None:
        raise Http404("snapshot not in this segment")
    return snapshot


@login_required
def segment_diff(request, segment_id: int):
    segment = _segment(request, segment_id)
    snapshots = list(selectors.segment_snapshots(segment, principal=request.user))
    default_left = str(snapshots[0].pk) if snapshots else "live"
    left_raw, right_raw = request.GET.get("left", default_left), request.GET.get("right", "live")
    left, right = _diff_side(snapshots, left_raw), _diff_side(snapshots, right_raw)
    diff = selectors.segment_diff(principal=request.user, segment=segment, left=left, right=right)
    return render(request, "segments/diff.html", {
        "segment": segment, "snapshots": snapshots, "left": left_raw, "right": right_raw,
        "left_obj": left, "right_obj": right, "diff": diff,
        "joined": list(diff["joined"][:200]), "left_list": list(diff["left"][:200]),
    })


@login_required
@require_POST
def export_create(request, segment_id: int):
    segment = _segment(request, segment_id)
    snapshots = list(selectors.segment_snapshots(segment, principal=request.user))
    form = ExportForm(request.POST, snapshots=snapshots)
    if form.is_valid():
        snapshot = next((s for s in snapshots if s.pk == form.cleaned_data["snapshot"]), None)
        try:
            services.export_start(actor=request.user, segment=segment, snapshot=snapshot,
                                     format=form.cleaned_data["format"])
        except ApplicationError as exc:
            form_add_application_error(form, exc, field_prefix="params.")
        else:
            if request.headers.get("HX-Request"):
                return render(request, "segments/partials/exports.html",
                              {"segment": segment, "export_form": ExportForm(snapshots=snapshots),
                               "exports": selectors.segment_exports_for_user(request.user, segment)})
            messages.success(request, _("已开始导出"))
            return redirect("segments:detail", segment_id=segment.pk)
    if request.headers.get("HX-Request"):
        return render(request, "segments/partials/exports.html",
                      {"segment": segment, "export_form": form,
                       "exports": selectors.segment_exports_for_user(request.user, segment)},
                      status=400)
    return render(request, "segments/detail.html", detail_context(request, segment, export_form=form), status=400)


@never_cache
@login_required
def export_status(request, export_id: int):
    require_segments(request.user)
    export = selectors.export_get_for_user(request.user, export_id)  # the exporter's own, 404 otherwise
    return render(request, "segments/partials/export_row.html", {"export": export, "segment": export.segment})


@login_required
def export_download(request, export_id: int):
    require_segments(request.user)
    return services.export_file_for_user(request.user, export_id)


@login_required
@require_POST
def action_create(request, segment_id: int):
    segment = _segment(request, segment_id)
    form = ActionForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            services.action_start(actor=request.user, segment=segment, kind=form.cleaned_data["kind"],
                                     params=form.params())
        except ApplicationError as exc:
            form_add_application_error(form, exc, field_prefix="params.")
        else:
            messages.success(request, _("已提交批量操作"))
            return redirect("segments:detail", segment_id=segment.pk)
    return render(request, "segments/detail.html", detail_context(request, segment, action_form=form), status=400)


@never_cache
@login_required
def action_status(request, segment_action_id: int):
    require_segments(request.user)
    action = selectors.action_get_for_user(request.user, segment_action_id)
    return render(request, "segments/partials/action_row.html", {"action": action})


@login_required
@require_POST
def segment_archive(request, segment_id: int):
    segment = _segment(request, segment_id)
    try:
        services.segment_archive(actor=request.user, segment=segment)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("segments:detail", segment_id=segment.pk)
    messages.success(request, _("客群「%(n)s」已归档") % {"n": segment.name})
    return redirect("segments:list")
