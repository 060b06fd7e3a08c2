from django import forms
from django.utils.translation import gettext_lazy as _

from core.models import Branch, Role, User
from customers.models import FunnelStage, LifecycleStage, RiskLevel, Task
from customers.selectors import SORTS


class CustomerFilterForm(forms.Form):
    """The 我的客户 filters; branch/advisor pickers only for people who see more than their own book."""

    q = forms.CharField(label=_("搜索"), required=False, max_length=50)
    risk_level = forms.MultipleChoiceField(label=_("风险等级"), choices=RiskLevel.choices, required=False)
    risk_expired = forms.ChoiceField(label=_("风测"), choices=[("", _("全部")), ("1", _("已过期或未测评"))],
                                     required=False)
    lifecycle_stage = forms.MultipleChoiceField(label=_("生命周期"), choices=LifecycleStage.choices, required=False)
    funnel_stage = forms.MultipleChoiceField(label=_("开户进度"), choices=FunnelStage.choices, required=False)
    no_contact_days = forms.IntegerField(label=_("未联系天数 ≥"), min_value=0, max_value=3650, required=False)
    tag = forms.MultipleChoiceField(label=_("标签"), required=False)
    tier = forms.MultipleChoiceField(label=_("价值分层"), required=False)
    branch = forms.ChoiceField(label=_("营业部"), required=False)
    advisor = forms.ChoiceField(label=_("投顾"), required=False)
    sort = forms.ChoiceField(label=_("排序"), required=False, choices=[
        ("assets", _("资产从高到低")), ("last_contact", _("最久未联系")), ("opened", _("最新开户")), ("name", _("姓名")),
    ])

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        from tagging.models import Tag, TierDefinition

        self.fields["tag"].choices = [(t.code, t.name) for t in Tag.objects.filter(active=True)]
        self.fields["tier"].choices = [(t.code, t.label) for t in
                                       TierDefinition.objects.filter(scheme__active=True).order_by("rank")]
        if user.role == Role.ADVISOR:
            del self.fields["branch"], self.fields["advisor"]
            return
        branches = Branch.objects.all()
        advisors = User.objects.filter(role=Role.ADVISOR, is_active=True)
        if user.role == Role.BRANCH_MANAGER:
            branches = branches.filter(pk=user.branch_id)
            advisors = advisors.filter(branch_id=user.branch_id)
            del self.fields["branch"]
        else:
            self.fields["branch"].choices = [("", _("全部营业部"))] + [(b.code, b.name) for b in branches]
            advisors = advisors.filter(branch__isnull=False)
        self.fields["advisor"].choices = [("", _("全部投顾"))] + [
            (str(a.pk), str(a)) for a in advisors.order_by("branch__code", "display_name")[:500]
        ]

    def filters(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "", []) and k != "sort"}
        return data

    def sort_key(self) -> str:
        value = self.cleaned_data.get("sort") or "assets"
        return value if value in SORTS else "assets"


class RevealForm(forms.Form):
    field = forms.ChoiceField(choices=[("mobile", _("手机号")), ("id_number", _("身份证号"))])
    reason = forms.CharField(label=_("查看原因"), min_length=2, max_length=200)


class NoteForm(forms.Form):
    body = forms.CharField(label=_("跟进记录"), widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)


class TaskCompleteForm(forms.Form):
    outcome = forms.ChoiceField(label=_("结果"), choices=Task.Outcome.choices)
    note = forms.CharField(label=_("说明"), required=False, max_length=1000)
