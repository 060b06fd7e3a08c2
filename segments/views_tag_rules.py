"""Rule tags in the visual builder: a tag's rule (tagging.rule_tags) edited with the same condition builder as
segments, because it is the same rule language (segments/rules.py). It lives here, above tagging, because the
builder does; the tag page (标签) links to it, and the JSON editor there stays for power users."""

import copy

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from core.access import feature_required
from core.errors import ApplicationError
from segments import builder
from segments.views import _builder_context, _tree_from_post
from tagging.models import Tag, TagRule
from tagging.rule_tags import tag_rule_save


@feature_required("tags")
def tag_rule_edit(request, code: str):
    tag = get_object_or_404(Tag, code=code)
    tag_rule = TagRule.objects.filter(tag=tag).first()
    if request.method != "POST":
        tree = copy.deepcopy(tag_rule.rule if tag_rule else builder.EMPTY_RULE)
        enabled = tag_rule.enabled if tag_rule else False
        remove = tag_rule.remove_when_unmatched if tag_rule else True
        return render(request, "segments/tag_rule_builder.html",
                      {**_builder_context(request, tree=tree), "tag": tag, "tag_rule": tag_rule,
                       "enabled": enabled, "remove_when_unmatched": remove})
    tree, error = _tree_from_post(request.POST)
    enabled = request.POST.get("enabled") == "on"
    remove = request.POST.get("remove_when_unmatched") == "on"
    error_path = None
    if not error:
        rule, paths = builder.rule_effective(tree)  # a group left without conditions is not saved
        if builder.is_group(rule) and not rule.get("rules"):
            error = _("至少添加一个条件再保存")
        else:
            try:
                tag_rule = tag_rule_save(tag=tag, rule=rule, enabled=enabled, remove_when_unmatched=remove,
                                         actor=request.user)
            except ApplicationError as exc:
                error_path = builder.error_path_in_tree(getattr(exc, "path", None), paths)
                error = _("规则有误，未保存：%(m)s") % {"m": exc.message}
            else:
                if request.POST.get("apply"):
                    from tagging.tasks import tag_rule_apply_task

                    tag_rule_apply_task.delay_on_commit(tag_rule.pk)
                    messages.success(request, _("规则已保存，正在按规则打标"))
                else:
                    messages.success(request, _("规则已保存"))
                return redirect("tagging:tag", code=tag.code)
    context = {**_builder_context(request, tree=tree, error=error, error_path=error_path), "tag": tag,
               "tag_rule": tag_rule, "enabled": enabled, "remove_when_unmatched": remove}
    return render(request, "segments/tag_rule_builder.html", context, status=400)
