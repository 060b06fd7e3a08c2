"""社群 pages: the group list and a group's detail (members, health chart, audience gap with 邀请,
join-way QR, purpose/audience edit). Advisors, operators, branch managers and admins use them
(404 for other roles); every group and every client shown is cut to the viewer's data scope.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from core.access import may
from core.errors import ApplicationError
from core.forms import form_add_application_error
from groups import selectors, services
from groups.forms import GroupEditForm, GroupFilterForm, InviteForm, PurposeTagRuleForm
from groups.models import GroupChat, Purpose, PurposeTagRule

GAP_LIST_LIMIT = 100


def _require_groups(user) -> None:
    if not may(user, "groups"):
        raise Http404("groups not available for this role")


def _group(request, group_id: int) -> GroupChat:
    _require_groups(request.user)
    return selectors.group_get_for_user(user=request.user, group_id=group_id)


@login_required
def group_list(request):
    _require_groups(request.user)
    form = GroupFilterForm(request.GET or None, owners=selectors.group_owners_for(request.user))
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    qs = selectors.group_list_for_user(request.user, purpose=filters.get("purpose") or "", owner_id=filters.get("owner"))
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    selectors.groups_attach_recent_flow(page, days=7)
    return render(request, "groups/list.html", {"form": form, "page": page, "purposes": Purpose.choices})


def _gap_context(request, group: GroupChat) -> dict:
    """What the 目标客群对照 card (groups/partials/gap.html) needs."""
    return {"group": group, "active": group.status == GroupChat.Status.ACTIVE,
            **selectors.group_audience_compare(group, request.user, limit=GAP_LIST_LIMIT)}


def _detail_context(request, group: GroupChat, edit_form: GroupEditForm | None = None) -> dict:
    user = request.user
    health = selectors.group_health(group)
    context = {
        **_gap_context(request, group),
        "health": health,
        "chart": {"days": health["days"], "tiers": health["tiers"]},
        "members": list(selectors.group_members_for_user(group, user)),
        "can_edit": services.group_may_edit(user, group),
    }
    if context["can_edit"]:
        context["edit_form"] = edit_form if edit_form is not None else GroupEditForm(
            initial={"purpose": group.purpose, "audience": group.audience_id}, segments=services.audience_choices_for(user))
    return context


@login_required
def group_detail(request, group_id: int):
    group = _group(request, group_id)
    return render(request, "groups/detail.html", _detail_context(request, group))


@login_required
@require_POST
def group_edit(request, group_id: int):
    group = _group(request, group_id)
    if not services.group_may_edit(request.user, group):
        raise Http404("not allowed to edit this group")
    form = GroupEditForm(request.POST, segments=services.audience_choices_for(request.user))
    if form.is_valid():
        try:
            services.group_update(actor=request.user, group=group, purpose=form.cleaned_data["purpose"],
                                  audience=form.cleaned_data["audience"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("已保存群的用途和目标客群"))
            return redirect("groups:detail", group_id=group.pk)
    return render(request, "groups/detail.html", _detail_context(request, group, edit_form=form), status=400)


@login_required
@require_POST
def group_invite(request, group_id: int):
    """邀请: invite tasks for the checked gap customers; 全部邀请 (the whole gap) first answers a confirmation with
    how many tasks for how many advisors (group_invite_plan: the creator's own count) and creates them only when
    that is confirmed, and only if the count has not grown since. Answers the gap card (or the page without htmx)."""
    group = _group(request, group_id)
    form = InviteForm(request.POST)
    result, error, confirm = None, None, None
    if not form.is_valid():
        error = _("请选择要邀请的客户")
    else:
        data = form.cleaned_data
        customers = selectors.invite_candidates(group, request.user, None if data["all"] else data["customers"])
        try:
            if data["all"]:
                plan = services.group_invite_plan(actor=request.user, group=group, customers=customers)
                if not data["confirmed"] or plan["to_create"] > (data["expected"] or 0):
                    confirm = {**plan, "changed": data["confirmed"]}
            if confirm is None:
                result = services.group_invite_tasks_create(actor=request.user, group=group, customers=customers)
        except ApplicationError as exc:
            error = exc.message
    if request.headers.get("HX-Request"):
        context = {**_gap_context(request, group), "invite_result": result, "invite_error": error,
                   "invite_confirm": confirm}
        return render(request, "groups/partials/gap.html", context, status=400 if error else 200)
    if confirm:
        return render(request, "groups/detail.html", {**_detail_context(request, group), "invite_confirm": confirm})
    if result:
        messages.success(request, _("已创建 %(n)s 个邀请任务") % {"n": result["created"]})
    elif error:
        messages.error(request, error)
    return redirect("groups:detail", group_id=group.pk)


@login_required
@require_POST
def group_join_way(request, group_id: int):
    """生成入群二维码 through WeCom; answers the QR card."""
    group = _group(request, group_id)
    error = None
    try:
        group = services.group_join_way_create(actor=request.user, group=group)
    except ApplicationError as exc:
        error = exc.message
    context = {"group": group, "join_error": error, "active": group.status == GroupChat.Status.ACTIVE}
    if request.headers.get("HX-Request"):
        return render(request, "groups/partials/join_way.html", context, status=400 if error else 200)
    if error:
        messages.error(request, error)
    return redirect("groups:detail", group_id=group.pk)


@login_required
@require_http_methods(["GET", "POST"])
def group_purposes(request):
    """群用途与自动标签: each purpose with its groups and the tags a joining client gets; operators and admins add a
    rule (POST the form) or delete one (POST ``delete=<rule id>``), everyone with groups reads them."""
    _require_groups(request.user)
    can_edit = services.purpose_tag_rules_may_edit(request.user)
    deleting = request.method == "POST" and "delete" in request.POST
    form = PurposeTagRuleForm(request.POST if request.method == "POST" and not deleting else None)
    if request.method == "POST":
        if not can_edit:
            raise Http404("not allowed to edit purpose tags")
        if deleting:
            rule = get_object_or_404(PurposeTagRule.objects.select_related("tag"),
                                     pk=request.POST["delete"] if request.POST["delete"].isdigit() else 0)
            services.purpose_tag_rule_delete(actor=request.user, rule=rule)
            messages.success(request, _("已删除：加入%(purpose)s不再自动打「%(tag)s」") % {
                "purpose": rule.get_purpose_display(), "tag": rule.tag.name})
            return redirect("groups:purposes")
        if form.is_valid():
            data = form.cleaned_data
            try:
                rule = services.purpose_tag_rule_add(actor=request.user, purpose=data["purpose"], tag=data["tag"],
                                                     remove_on_leave=data["remove_on_leave"])
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                messages.success(request, _("已保存：加入%(purpose)s的客户将自动打「%(tag)s」") % {
                    "purpose": rule.get_purpose_display(), "tag": rule.tag.name})
                return redirect("groups:purposes")
    context = {"purposes": services.purpose_tag_rules_by_purpose(), "form": form, "can_edit": can_edit}
    return render(request, "groups/purposes.html", context, status=400 if form.errors else 200)
