from django import forms
from django.utils.translation import gettext_lazy as _

from core.models import Branch, Role, User
from customers.models import CustomFieldType, FunnelStage, LifecycleStage, RiskLevel, Task
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
        self._custom_fields_add()
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

    def _custom_fields_add(self) -> None:
        """One filter per active custom field: text contains, number and date ranges, choices (any of). Their
        names start with ``cf_`` (the chips and their removal work on them like on any other filter)."""
        from customers.custom_fields import definitions_active
        from customers.models import CustomFieldType as T

        self.custom_filters = []
        for d in definitions_active():
            name = f"cf_{d.code}"
            if d.type == T.TEXT:
                fields = {name: forms.CharField(label=d.label, required=False, max_length=100)}
                ops = {name: "contains"}
            elif d.type == T.NUMBER:
                fields = {f"{name}_min": forms.DecimalField(label=_("%(label)s ≥") % {"label": d.label}, required=False,
                                                            max_digits=21, decimal_places=6),
                          f"{name}_max": forms.DecimalField(label=_("%(label)s ≤") % {"label": d.label}, required=False,
                                                            max_digits=21, decimal_places=6)}
                ops = {f"{name}_min": "gte", f"{name}_max": "lte"}
            elif d.type == T.DATE:
                fields = {f"{name}_from": forms.DateField(label=_("%(label)s 从") % {"label": d.label}, required=False),
                          f"{name}_to": forms.DateField(label=_("%(label)s 至") % {"label": d.label}, required=False)}
                ops = {f"{name}_from": "gte", f"{name}_to": "lte"}
            else:
                fields = {name: forms.MultipleChoiceField(label=d.label, required=False,
                                                          choices=[(o, o) for o in d.options])}
                ops = {name: "in" if d.type == T.CHOICE else "has_any"}
            self.fields.update(fields)
            self.custom_filters.append({"definition": d, "names": list(fields), "ops": ops})

    def custom_filter_fields(self) -> list[dict]:
        """The custom field filters for the template: the definition and its bound fields."""
        return [{"definition": f["definition"], "fields": [self[name] for name in f["names"]]}
                for f in self.custom_filters]

    def filters(self) -> dict:
        custom_names = {name for f in self.custom_filters for name in f["names"]}
        data = {k: v for k, v in self.cleaned_data.items()
                if v not in (None, "", []) and k != "sort" and k not in custom_names}
        custom = []
        for f in self.custom_filters:
            d = f["definition"]
            for name in f["names"]:
                value = self.cleaned_data.get(name)
                if value in (None, "", []):
                    continue
                custom.append({"code": d.code, "field_type": d.type, "op": f["ops"][name], "value": value})
        if custom:
            data["custom"] = custom
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


class CustomFieldDefinitionForm(forms.Form):
    """An admin's custom field definition; the service checks it (customers.services.custom_field_definition_*).
    On an existing field, code and type are shown but cannot change."""

    code = forms.CharField(label=_("代码"), max_length=40,
                           help_text=_("小写字母开头，只含小写字母、数字和下划线；用于 API、导入列 cf:代码 和客群规则，"
                                       "创建后不能修改"))
    label = forms.CharField(label=_("名称"), max_length=50)
    type = forms.ChoiceField(label=_("类型"), choices=CustomFieldType.choices)
    options = forms.CharField(label=_("选项"), required=False, widget=forms.Textarea(attrs={"rows": 4}),
                              help_text=_("每行一个选项。删除的选项在已有客户上保留并标记"))
    required = forms.BooleanField(label=_("必填"), required=False,
                                  help_text=_("新客户必须填写；在客户页保存时不能为空。已有客户不受影响"))
    min_value = forms.DecimalField(label=_("最小值"), required=False, max_digits=21, decimal_places=6)
    max_value = forms.DecimalField(label=_("最大值"), required=False, max_digits=21, decimal_places=6)
    max_length = forms.IntegerField(label=_("最大长度"), required=False, min_value=1, max_value=500,
                                    help_text=_("留空为 500"))
    order = forms.IntegerField(label=_("排序"), required=False, min_value=0, max_value=10000, initial=0)

    def __init__(self, *args, definition=None, **kwargs):
        if definition is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = {
                "code": definition.code, "label": definition.label, "type": definition.type,
                "options": "\n".join(definition.options or []), "required": definition.required,
                "min_value": definition.min_value, "max_value": definition.max_value,
                "max_length": definition.max_length, "order": definition.order,
            }
        super().__init__(*args, **kwargs)
        self.definition = definition
        if definition is not None:
            for name in ("code", "type"):
                self.fields[name].disabled = True
                self.fields[name].initial = getattr(definition, name)

    def option_list(self) -> list[str]:
        return [line.strip() for line in (self.cleaned_data.get("options") or "").splitlines() if line.strip()]
