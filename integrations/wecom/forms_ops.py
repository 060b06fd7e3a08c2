"""Forms of the contact-way and transfer pages; the rules themselves live in contact_ways.py / transfers.py."""

from django import forms
from django.utils.translation import gettext_lazy as _

from core.models import Role, User
from integrations.wecom.contact_ways import WELCOME_MAX_CHARS
from integrations.wecom.models import Transfer
from tagging.models import Tag


class AdvisorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        name = obj.display_name or obj.username
        branch = obj.branch.code if obj.branch_id else "-"
        suffix = "" if obj.is_active else _("（已停用）")
        unbound = "" if obj.wecom_userid else _("（未绑定企业微信）")
        return f"{name} · {branch}{suffix}{unbound}"


class ContactWayForm(forms.Form):
    name = forms.CharField(label=_("名称"), max_length=100,
                           widget=forms.TextInput(attrs={"class": "form-control", "placeholder": _("如：抖音直播间 3 月")}))
    channel = forms.CharField(label=_("渠道"), max_length=50,
                              widget=forms.TextInput(attrs={"class": "form-control", "placeholder": "douyin"}),
                              help_text=_("写入客户的开户渠道（客户尚无渠道时）"))
    campaign = forms.CharField(label=_("活动"), max_length=100, required=False,
                               widget=forms.TextInput(attrs={"class": "form-control"}))
    advisor = AdvisorChoiceField(label=_("接待投顾"), queryset=User.objects.none(),
                                 widget=forms.Select(attrs={"class": "form-select"}))
    tags = forms.ModelMultipleChoiceField(label=_("自动打标签"), queryset=Tag.objects.none(), required=False,
                                          widget=forms.SelectMultiple(attrs={"class": "form-select", "size": 6}))
    welcome_message = forms.CharField(label=_("欢迎语"), required=False, max_length=WELCOME_MAX_CHARS,
                                      widget=forms.Textarea(attrs={"class": "form-control", "rows": 4}),
                                      help_text=_("客户扫码添加后由投顾自动发送（企业微信后台未配置欢迎语时生效）"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["advisor"].queryset = (User.objects.filter(role=Role.ADVISOR, is_active=True)
                                           .select_related("branch").order_by("branch__code", "username"))
        self.fields["tags"].queryset = Tag.objects.filter(active=True).select_related("category")

    def clean_advisor(self):
        advisor = self.cleaned_data["advisor"]
        if not advisor.wecom_userid:
            raise forms.ValidationError(_("该投顾未绑定企业微信账号，无法生成活码"))
        return advisor


class TransferForm(forms.Form):
    kind = forms.ChoiceField(label=_("类型"), choices=Transfer.Kind.choices, initial=Transfer.Kind.RESIGNED,
                             widget=forms.RadioSelect)
    from_advisor = AdvisorChoiceField(label=_("原投顾"), queryset=User.objects.none(),
                                      widget=forms.Select(attrs={"class": "form-select"}))
    to_advisor = AdvisorChoiceField(label=_("接替投顾"), queryset=User.objects.none(),
                                    widget=forms.Select(attrs={"class": "form-select"}))

    def __init__(self, *args, user, **kwargs):
        from integrations.wecom.transfers import transfer_advisors_for

        super().__init__(*args, **kwargs)
        self.fields["from_advisor"].queryset = transfer_advisors_for(user)
        self.fields["to_advisor"].queryset = transfer_advisors_for(user, active_only=True)
