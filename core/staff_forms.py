"""Forms of the 用户与权限 pages. They only shape the input; the rules (unique username and employee code, a branch
for advisors and branch managers, an existing branch, the password validators) are checked by core/staff_services.py,
whose errors land on the field they name."""

from django import forms
from django.contrib.auth import password_validation
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

from core.models import Branch, Role
from core.staff_services import USERNAME_MAX_LENGTH, PasswordMode


def _branch_choices():
    return [("", _("—（总部/全公司）"))] + [(b.code, str(b)) for b in Branch.objects.order_by("code")]


class StaffFilterForm(forms.Form):
    q = forms.CharField(label=_("搜索"), required=False, max_length=64,
                        widget=forms.TextInput(attrs={"class": "form-control", "type": "search",
                                                      "placeholder": _("用户名、姓名或工号")}))
    role = forms.ChoiceField(label=_("角色"), required=False, choices=[("", _("全部角色")), *Role.choices],
                             widget=forms.Select(attrs={"class": "form-select", "data-autosubmit": ""}))
    branch = forms.ChoiceField(label=_("营业部"), required=False,
                               widget=forms.Select(attrs={"class": "form-select", "data-autosubmit": ""}))
    status = forms.ChoiceField(label=_("状态"), required=False,
                               choices=[("", _("全部")), ("active", _("启用")), ("inactive", _("已停用"))],
                               widget=forms.Select(attrs={"class": "form-select", "data-autosubmit": ""}))
    locked = forms.BooleanField(label=_("只看锁定中"), required=False,
                                widget=forms.CheckboxInput(attrs={"class": "form-check-input", "data-autosubmit": ""}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["branch"].choices = [("", _("全部营业部"))] + [(b.code, str(b)) for b in Branch.objects.order_by("code")]


class StaffForm(forms.Form):
    """Create (with ``username`` and the initial password) or edit (the rest)."""

    username = forms.CharField(label=_("用户名"), max_length=USERNAME_MAX_LENGTH,
                               help_text=_("登录用，创建后不能修改；字母、数字和 @ . + - _"),
                               widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}))
    display_name = forms.CharField(label=_("姓名"), max_length=50,
                                   widget=forms.TextInput(attrs={"class": "form-control"}))
    role = forms.ChoiceField(label=_("角色"), choices=[("", "—"), *Role.choices],
                             widget=forms.Select(attrs={"class": "form-select"}))
    branch = forms.CharField(label=_("营业部"), required=False, help_text=_("投顾和营业部经理必须选择"),
                             widget=forms.Select(attrs={"class": "form-select"}))
    employee_code = forms.CharField(label=_("工号"), required=False, max_length=32,
                                    widget=forms.TextInput(attrs={"class": "form-control"}))
    password_mode = forms.ChoiceField(
        label=_("初始密码"), initial=PasswordMode.GENERATED, widget=forms.RadioSelect,
        choices=[(PasswordMode.GENERATED, _("生成一次性密码（只显示一次）")), (PasswordMode.SET_BY_ADMIN, _("由我设置"))])
    password = forms.CharField(label=_("密码"), required=False, strip=False,
                               help_text=lazy(lambda: " ".join(password_validation.password_validators_help_texts()),
                                              str)(),
                               widget=forms.PasswordInput(attrs={"class": "form-control", "autocomplete": "new-password"}))

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["branch"].widget.choices = _branch_choices()
        if not creating:
            for name in ("username", "password_mode", "password"):
                del self.fields[name]

    def clean(self):
        data = super().clean()
        if data.get("password_mode") == PasswordMode.SET_BY_ADMIN and not data.get("password"):
            self.add_error("password", _("选择“由我设置”时请填写密码"))
        return data


class PasswordResetForm(forms.Form):
    password_mode = forms.ChoiceField(
        label=_("新密码"), initial=PasswordMode.GENERATED, widget=forms.RadioSelect,
        choices=[(PasswordMode.GENERATED, _("生成一次性密码（只显示一次）")), (PasswordMode.SET_BY_ADMIN, _("由我设置"))])
    password = forms.CharField(label=_("密码"), required=False, strip=False,
                               widget=forms.PasswordInput(attrs={"class": "form-control", "autocomplete": "new-password"}))

    def clean(self):
        data = super().clean()
        if data.get("password_mode") == PasswordMode.SET_BY_ADMIN and not data.get("password"):
            self.add_error("password", _("选择“由我设置”时请填写密码"))
        return data
