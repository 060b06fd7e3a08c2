"""标签 pages: taxonomy and rule editor for operators; manual and bulk tagging for whoever serves the client."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.access import roles_for
from core.errors import ApplicationError
from customers.models import Customer
from customers.selectors import customer_get_for_user
from tagging import selectors, services
from tagging.forms import TagCategoryForm, TagForm, TagPickForm, TagRuleForm
from tagging.models import Tag, TagRule, TagSource
from tagging.rule_tags import customer_tags_bulk_set, tag_rule_preview, tag_rule_save

TAXONOMY_ROLES = roles_for("tags")
TAGGING_ROLES = roles_for("tags.apply")
EXAMPLE_RULE = """{
  "op": "and",
  "rules": [
    {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7},
    {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365, "product_type": "fund"}
  ]
}"""


def _require(user, roles):
    if user.role not in roles:
        raise Http404("not for this role")


@login_required
def index(request, code=None):
    _require(request.user, TAXONOMY_ROLES)
    tag = get_object_or_404(Tag.objects.select_related("category"), code=code) if code else None
    context = {"tree": selectors.taxonomy_tree(user=request.user), "selected": tag,
               "tag_form": TagForm(instance=tag) if tag else None, "category_form": TagCategoryForm(),
               "new_tag_form": TagForm()}
    if tag:
        tag_rule = TagRule.objects.filter(tag=tag).first()
        context.update({
            "tag_rule": tag_rule,
            "rule_form": TagRuleForm(initial={
                "rule": json.dumps(tag_rule.rule, ensure_ascii=False, indent=2) if tag_rule else EXAMPLE_RULE,
                "enabled": tag_rule.enabled if tag_rule else False,
                "remove_when_unmatched": tag_rule.remove_when_unmatched if tag_rule else True}),
            "history": selectors.tag_history(tag=tag, user=request.user),
        })
    return render(request, "tagging/index.html", context)


@login_required
@require_POST
def tag_save(request, code=None):
    _require(request.user, TAXONOMY_ROLES)
    instance = get_object_or_404(Tag, code=code) if code else None
    form = TagForm(request.POST, instance=instance)
    if form.is_valid():
        tag = form.save()
        messages.success(request, _("标签已保存"))
        return redirect("tagging:tag", code=tag.code)
    context = {"tree": selectors.taxonomy_tree(user=request.user), "selected": instance,
               "tag_form": form if instance else None, "new_tag_form": form if not instance else TagForm(),
               "category_form": TagCategoryForm()}
    return render(request, "tagging/index.html", context, status=400)


@login_required
@require_POST
def category_save(request):
    _require(request.user, TAXONOMY_ROLES)
    form = TagCategoryForm(request.POST)
    if form.is_valid():
        form.save()
        messages.success(request, _("分类已保存"))
        return redirect("tagging:index")
    return render(request, "tagging/index.html", {"tree": selectors.taxonomy_tree(user=request.user),
                                                  "category_form": form, "new_tag_form": TagForm()}, status=400)


@login_required
@require_POST
def rule_preview(request, code):
    _require(request.user, TAXONOMY_ROLES)
    get_object_or_404(Tag, code=code)
    form = TagRuleForm(request.POST)
    if not form.is_valid():
        return render(request, "tagging/partials/rule_preview.html", {"errors": form.errors.get("rule")}, status=400)
    count = tag_rule_preview(rule=form.cleaned_data["rule"], principal=request.user)
    return render(request, "tagging/partials/rule_preview.html", {"count": count})


@login_required
@require_POST
def rule_save(request, code):
    _require(request.user, TAXONOMY_ROLES)
    tag = get_object_or_404(Tag, code=code)
    form = TagRuleForm(request.POST)
    if not form.is_valid():
        return render(request, "tagging/partials/rule_preview.html", {"errors": form.errors.get("rule")}, status=400)
    tag_rule = tag_rule_save(tag=tag, rule=form.cleaned_data["rule"], enabled=form.cleaned_data["enabled"],
                             remove_when_unmatched=form.cleaned_data["remove_when_unmatched"], actor=request.user)
    if request.POST.get("apply"):
        from tagging.tasks import tag_rule_apply_task

        tag_rule_apply_task.delay_on_commit(tag_rule.pk)
    count = tag_rule_preview(rule=tag_rule.rule, principal=request.user)
    return render(request, "tagging/partials/rule_preview.html",
                  {"count": count, "saved": True, "applying": bool(request.POST.get("apply"))})


def tag_section_context(*, request, customer) -> dict:
    """What the 360° page's 标签 and 历史 sections show (registered in TaggingConfig.ready)."""
    from tagging.conversation import suggestions_pending

    tags = selectors.customer_tags_current(customer=customer)
    by_category: dict = {}
    for row in tags:
        by_category.setdefault(row.tag.category, []).append(row)
    return {
        "tag_section": "tagging/partials/customer_tags.html",
        "history_section": "tagging/partials/customer_history.html",
        "customer_tags_by_category": by_category,
        "tag_history": selectors.customer_tag_history(customer=customer),
        "suggestions": list(suggestions_pending(customer=customer)),
        "can_tag": request.user.role in TAGGING_ROLES,
        "tag_pick_form": TagPickForm(),
    }


def _tag_section(request, customer, form=None, status=200):
    return render(request, "tagging/partials/customer_tags.html",
                  {"customer": customer, **tag_section_context(request=request, customer=customer),
                   **({"tag_pick_form": form} if form else {})}, status=status)


@login_required
def customer_tags(request, external_id):
    """The 标签 section alone, refreshed when a note or a confirmation changed the suggestions."""
    return _tag_section(request, customer_get_for_user(user=request.user, external_id=external_id))


@login_required
@require_POST
def customer_tag_add(request, external_id):
    customer = customer_get_for_user(user=request.user, external_id=external_id)
    _require(request.user, TAGGING_ROLES)
    form = TagPickForm(request.POST)
    if not form.is_valid():
        return _tag_section(request, customer, form, status=400)
    services.customer_tag_add(customer=customer, tag=form.cleaned_data["tag"], source=TagSource.MANUAL,
                              actor=request.user, evidence=form.cleaned_data["evidence"])
    return _tag_section(request, customer)


@login_required
@require_POST
def customer_tag_remove(request, external_id, tag_code):
    customer = customer_get_for_user(user=request.user, external_id=external_id)
    _require(request.user, TAGGING_ROLES)
    tag = get_object_or_404(Tag, code=tag_code)
    services.customer_tag_remove(customer=customer, tag=tag, source=TagSource.MANUAL, actor=request.user)
    return _tag_section(request, customer)


@login_required
@require_POST
def bulk_tag(request):
    """Tag/untag the customers selected on the list; only customers in the user's scope are touched."""
    _require(request.user, TAGGING_ROLES)
    form = TagPickForm(request.POST)
    external_ids = request.POST.getlist("customers")
    action = request.POST.get("action")
    if not form.is_valid() or action not in ("add", "remove"):
        return HttpResponse(_("请选择标签和操作"), status=400)
    ids = list(Customer.objects.visible_to(request.user).filter(external_id__in=external_ids)
               .values_list("pk", flat=True))
    try:
        changed = customer_tags_bulk_set(customer_ids=ids, tag=form.cleaned_data["tag"], add=action == "add",
                                         actor=request.user)
    except ApplicationError as err:
        return HttpResponse(err.message, status=400)
    text = _("已为 %(n)s 位客户添加标签「%(tag)s」") if action == "add" else _("已为 %(n)s 位客户移除标签「%(tag)s」")
    message = text % {"n": changed, "tag": form.cleaned_data["tag"].name}
    return HttpResponse(format_html('<span class="text-success" data-testid="bulk-result">{}</span>', message))
