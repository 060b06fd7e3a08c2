"""Forms of the group pages: only shapes; the rules live in groups.services."""

from django import forms
from django.utils.translation import gettext_lazy as _

from groups.models import Purpose


class GroupFilterForm(forms.Form):
    purpose = forms.ChoiceField(label=_("用途"), required=False)
    owner = forms.TypedChoiceField(label=_("群主"), required=False, coerce=int, empty_value=None)

    def __init__(self, *args, owners=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purpose"].choices = [("", _("全部")), *Purpose.choices]
        self.fields["owner"].choices = [("", _("全部")), *[(u.pk, str(u)) for u in owners]]


class GroupEditForm(forms.Form):
    purpose = forms.ChoiceField(label=_("用途"), choices=Purpose.choices)
    audience = forms.TypedChoiceField(label=_("目标客群"), required=False, coerce=int, empty_value=None,
                                      help_text=_("客群中还未入群的客户会列在下方，可一键派发邀请任务"))

    def __init__(self, *args, segments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["audience"].choices = [("", _("不设置")), *[(s.pk, s.name) for s in segments]]
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select"

    def add_error(self, field, error):
        super().add_error(field, error)
        if field in self.fields:
            self.fields[field].widget.attrs["class"] += " is-invalid"


class InviteForm(forms.Form):
    """Which gap customers to invite: checked ids, or everyone in the gap (``all``)."""

    customers = forms.TypedMultipleChoiceField(required=False, coerce=int)
    all = forms.BooleanField(required=False)
    # 全部邀请 is confirmed on a second post, with the number of tasks the confirmation showed
    confirmed = forms.BooleanField(required=False)
    expected = forms.IntegerField(required=False, min_value=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # any id may be posted; the service cuts it to the actor's scope and the group's gap
        self.fields["customers"].valid_value = lambda value: str(value).isdigit()

    def clean(self):
        data = super().clean()
        if not data.get("all") and not data.get("customers"):
            raise forms.ValidationError(_("请选择要邀请的客户"))
        return data


class PurposeTagRuleForm(forms.Form):
    """入群自动标签: a tag for every client who joins a group of a purpose (the rules live in groups.services)."""

    purpose = forms.ChoiceField(label=_("群用途"), choices=Purpose.choices,
                                widget=forms.Select(attrs={"class": "form-select"}))
    tag = forms.ModelChoiceField(label=_("入群时打的标签"), queryset=None,
                                 widget=forms.Select(attrs={"class": "form-select"}))
    remove_on_leave = forms.BooleanField(label=_("退群时移除（客户不在任何该用途的群中时）"), required=False,
                                         widget=forms.CheckboxInput(attrs={"class": "form-check-input"}))

    def __init__(self, *args, **kwargs):
        from tagging.models import Tag

        super().__init__(*args, **kwargs)
        self.fields["tag"].queryset = Tag.objects.filter(active=True).select_related("category").order_by(
            "category__name", "name")
