import json

from django import forms
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError
from segments.rules import rule_validate
from tagging.models import Tag, TagCategory


class TagCategoryForm(forms.ModelForm):
    class Meta:
        model = TagCategory
        fields = ["code", "name", "kind", "position"]


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["code", "name", "category", "description", "exclusive_group", "default_ttl_days", "sync_to_wecom",
                  "active"]


class TagRuleForm(forms.Form):
    rule = forms.CharField(label=_("规则（JSON）"), widget=forms.Textarea(attrs={"rows": 10, "class": "font-monospace"}))
    enabled = forms.BooleanField(label=_("启用（按计划自动打标）"), required=False)
    remove_when_unmatched = forms.BooleanField(label=_("不再满足时移除"), required=False, initial=True)

    def clean_rule(self):
        try:
            rule = json.loads(self.cleaned_data["rule"])
        except json.JSONDecodeError as err:
            raise forms.ValidationError(_("不是有效的 JSON：第 %(line)s 行 %(msg)s") % {"line": err.lineno,
                                                                                   "msg": err.msg}) from None
        try:
            rule_validate(rule)
        except ApplicationError as err:
            raise forms.ValidationError(err.message) from None
        return rule


class TagPickForm(forms.Form):
    tag = forms.ModelChoiceField(label=_("标签"), queryset=Tag.objects.filter(active=True), to_field_name="code")
    evidence = forms.CharField(label=_("依据"), required=False, max_length=500)
