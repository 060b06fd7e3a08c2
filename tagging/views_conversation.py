"""Conversation tags: advisors confirm or reject suggestions on the 360° page; operators keep the keyword
rules and try them on pasted text."""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from core.access import roles_for
from core.errors import ApplicationError
from tagging import conversation
from tagging.models import ConversationRule, Tag

RULE_ROLES = roles_for("tags")
WORD_MAX = 30
TRY_TEXT_MAX = 5000


def _require_rule_role(user):
    if user.role not in RULE_ROLES:
        raise Http404("not for this role")


# --- suggestions on the 360° page --------------------------------------------------------------

def _suggestions(request, customer, *, flash: str = "", error: str = "", status: int = 200):
    response = render(request, "tagging/partials/suggestions.html", {
        "customer": customer, "suggestions": list(conversation.suggestions_pending(customer=customer)),
        "flash": flash, "error": error}, status=status)
    if flash:
        # the 360° page's tag list can refresh itself on this event
        response["HX-Trigger"] = json.dumps({"customer-tags-changed": {"customer": customer.external_id}})
    return response


def _decide(request, suggestion_id, service, done: str):
    suggestion = conversation.suggestion_get_for_user(user=request.user, suggestion_id=suggestion_id)
    if request.user.role not in conversation.DECIDE_ROLES:
        raise PermissionDenied("operators and compliance do not decide on suggestions")
    try:
        service(user=request.user, suggestion=suggestion)
    except ApplicationError as err:
        # htmx swaps only 2xx answers; the refreshed list shows the message (e.g. decided in another tab)
        return _suggestions(request, suggestion.customer, error=err.message,
                            status=200 if request.htmx else err.status_code)
    return _suggestions(request, suggestion.customer, flash=done % {"tag": suggestion.tag.name})


@login_required
@require_POST
def suggestion_confirm(request, suggestion_id):
    return _decide(request, suggestion_id, conversation.suggestion_confirm, _("已添加标签「%(tag)s」"))


@login_required
@require_POST
def suggestion_reject(request, suggestion_id):
    return _decide(request, suggestion_id, conversation.suggestion_reject, _("已忽略「%(tag)s」的建议"))


# --- operators: rules and the try-it box ------------------------------------------------------

def _words_field(label, help_text, required=False):
    return forms.CharField(label=label, help_text=help_text, required=required, max_length=2000,
                           widget=forms.TextInput(attrs={"class": "form-control"}))


class ConversationRuleForm(forms.Form):
    tag = forms.ModelChoiceField(label=gettext_lazy("标签"), to_field_name="code",
                                 queryset=Tag.objects.filter(active=True).select_related("category"),
                                 widget=forms.Select(attrs={"class": "form-select"}))
    keywords = _words_field(gettext_lazy("关键词"), gettext_lazy("任一命中即可，用逗号或顿号分隔，如：两融、融资融券、融券"),
                            required=True)
    required_any = _words_field(gettext_lazy("需同时出现"),
                                gettext_lazy("可选：同一分句中还需出现其中之一，如：想、了解、开通；{时间} 表示任意时间表达"))
    excluded = _words_field(gettext_lazy("排除词"), gettext_lazy("可选：分句中出现这些词时不识别，如：身份证、风险测评"))
    enabled = forms.BooleanField(label=gettext_lazy("启用"), required=False, initial=True)

    def _words(self, name):
        words = conversation.words_parse(self.cleaned_data.get(name, ""))
        for word in words:
            if len(word) > WORD_MAX:
                raise forms.ValidationError(_("“%(word)s”太长了，每个词最多 %(n)s 个字") % {"word": word, "n": WORD_MAX})
            if word.startswith(conversation.EXCLUDE_PREFIX):
                raise forms.ValidationError(_("词不能以 ! 开头；要排除的词请填在“排除词”里"))
            if "{" in word and word not in conversation.PLACEHOLDERS:
                raise forms.ValidationError(_("未知的占位符“%(word)s”，可用：%(known)s") % {
                    "word": word, "known": "、".join(conversation.PLACEHOLDERS)})
        return words

    def clean_keywords(self):
        words = self._words("keywords")
        if not words:
            raise forms.ValidationError(_("请至少填写一个关键词"))
        return words

    def clean_required_any(self):
        return self._words("required_any")

    def clean_excluded(self):
        words = self._words("excluded")
        if any(w in conversation.PLACEHOLDERS for w in words):
            raise forms.ValidationError(_("排除词不能使用占位符"))
        return words


def _with_words(rule: ConversationRule) -> ConversationRule:
    """Split required_any into the words to require and the words to exclude, for display."""
    spec = conversation.RuleSpec.of(rule)
    rule.required_words, rule.excluded_words = list(spec.required), list(spec.excluded)
    return rule


def _rules():
    return [_with_words(r) for r in ConversationRule.objects.select_related("tag", "tag__category").order_by(
        "tag__category__position", "tag__code", "pk")]


@login_required
def conversation_rules(request):
    """会话识别规则: the list, an add form, and a try-it box."""
    _require_rule_role(request.user)
    form = ConversationRuleForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            created = conversation.conversation_rule_create(
                actor=request.user, tag=form.cleaned_data["tag"], keywords=form.cleaned_data["keywords"],
                required_any=form.cleaned_data["required_any"], excluded=form.cleaned_data["excluded"],
                enabled=form.cleaned_data["enabled"])
            if not request.htmx:
                messages.success(request, _("已为「%(tag)s」新增规则") % {"tag": created.tag.name})
                return redirect("tagging:conversation_rules")
            form = ConversationRuleForm()
        else:
            status = 400
    context = {"form": form, "rules": _rules(), "created": created}
    if request.htmx:
        return render(request, "tagging/partials/conversation_rules_body.html", context, status=status)
    return render(request, "tagging/conversation_rules.html", context, status=status)


@login_required
def conversation_rules_try(request):
    """Run the enabled rules on pasted text and show what they find, and what they saw but did not take."""
    _require_rule_role(request.user)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    text = (request.POST.get("text") or "").strip()[:TRY_TEXT_MAX]
    matches = conversation.conversation_scan(text=text) if text else []
    found = {m.tag_code for m in matches}
    hits = conversation.conversation_explain(text=text) if text else []
    reasons = {"negated": _("否定"), "excluded": _("含排除词"), "missing_required": _("缺少需同时出现的词")}
    skipped = [{"hit": h, "reason": reasons.get(h.reason, h.reason)} for h in hits
               if h.reason and h.tag_code not in found]
    tags = {t.code: t for t in Tag.objects.filter(code__in={m.tag_code for m in matches} | {h.tag_code for h in hits})}
    return render(request, "tagging/partials/conversation_try.html", {
        "text": text, "matches": [{"match": m, "tag": tags.get(m.tag_code)} for m in matches],
        "skipped": [{**s, "tag": tags.get(s["hit"].tag_code)} for s in skipped]})


@login_required
@require_POST
def conversation_rule_toggle(request, rule_id):
    _require_rule_role(request.user)
    rule = get_object_or_404(ConversationRule.objects.select_related("tag", "tag__category"), pk=rule_id)
    conversation.conversation_rule_set_enabled(actor=request.user, rule=rule, enabled=not rule.enabled)
    return render(request, "tagging/partials/conversation_rule_row.html", {"rule": _with_words(rule)})
