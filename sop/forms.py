"""Forms of the journey pages. Each turns its fields into a piece of the JSON definition
(``trigger()``, ``step()``, ``apply()``); the definition's validator (sop/definition.py) stays the
judge of what is allowed, and its path errors are shown on the field they name (``PATH_FIELDS``).
"""

import json

from django import forms
from django.utils.translation import gettext_lazy as _

from customers.models import FunnelStage
from sop.definition import GOALS, MESSAGE_STEPS, TRIGGERS

EXECUTORS = [("system", _("系统执行")), ("advisor", _("投顾执行"))]
WAIT_MODES = [("minutes", _("等待一段时间")), ("until_time", _("等到当天某时刻")), ("next_trading_day", _("等到下一个交易日"))]
UNITS = [("1", _("分钟")), ("60", _("小时")), ("1440", _("天"))]
BRANCH_CHOICES = [("rule", _("客户满足规则（客群）")), ("replied", _("客户在若干小时内回复")), ("tag", _("客户带有标签")),
                  ("ab", _("A/B 分流"))]
# the last part of a definition path → the form field that shows its error
PATH_FIELDS = {"minutes": "wait_value", "until_time": "until_time", "at": "at", "kind": "kind", "within_hours": "within_hours",
               "percent_a": "percent_a", "template": "template", "executor": "executor", "title": "title",
               "due_hours": "due_hours", "event": "event", "id": None}


class _Styled:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.Select | forms.SelectMultiple):
                widget.attrs.setdefault("class", "form-select form-select-sm")
            elif not isinstance(widget, forms.CheckboxInput | forms.HiddenInput | forms.RadioSelect):
                widget.attrs.setdefault("class", "form-control form-control-sm")


def _int_or_none(value):
    return int(value) if value not in (None, "") else None


class TriggerForm(_Styled, forms.Form):
    trigger_type = forms.ChoiceField(label=_("触发方式"), choices=list(TRIGGERS.items()))
    tag = forms.ChoiceField(label=_("标签"), required=False)
    segment = forms.TypedChoiceField(label=_("客群"), coerce=int, empty_value=None, required=False)
    stage = forms.ChoiceField(label=_("开户进度"), choices=[("", "—"), *FunnelStage.choices], required=False)
    hours = forms.IntegerField(label=_("停滞超过（小时）"), required=False)
    field = forms.ChoiceField(label=_("日期字段"), choices=[("birthday", _("生日")), ("risk_assessment_expiry", _("风测到期"))],
                              required=False)
    days_before = forms.IntegerField(label=_("提前天数"), required=False, initial=0)
    at = forms.CharField(label=_("时刻（HH:MM）"), required=False, max_length=5)
    days = forms.ChoiceField(label=_("日子"), choices=[("trading", _("每个交易日")), ("every", _("每天"))], required=False)
    to = forms.MultipleChoiceField(label=_("变为分层（可多选，空 = 任意变化）"), required=False)
    contact_way = forms.CharField(label=_("只限这个渠道活码（id 或 state，可空）"), required=False, max_length=30)

    # which fields each trigger type uses (the page shows only those)
    FIELDS_FOR = {"tag_added": ["tag"], "segment_entered": ["segment"], "manual": ["segment"],
                  "funnel_stage": ["stage"], "funnel_stalled": ["stage", "hours"], "date_field": ["field", "days_before"],
                  "schedule": ["at", "days", "segment"], "tier_changed": ["to"],
                  "wecom_contact_added": ["contact_way"]}

    def __init__(self, *args, tags=(), segments=(), tiers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = [("", "—"), *tags]
        self.fields["segment"].choices = [("", "—"), *segments]
        self.fields["to"].choices = list(tiers)
        for name, field in self.fields.items():
            shown = sorted(t for t, names in self.FIELDS_FOR.items() if name in names)
            if shown:
                field.widget.attrs["data-show-when"] = "trigger_type:" + ",".join(shown)

    @staticmethod
    def initial_from(trigger: dict) -> dict:
        trigger = trigger or {}
        return {"trigger_type": trigger.get("type", "manual"), **{k: v for k, v in trigger.items() if k != "type"}}

    def trigger(self) -> dict:
        data = self.cleaned_data
        kind = data["trigger_type"]
        out = {"type": kind}
        for name in self.FIELDS_FOR.get(kind, []):
            value = data.get(name)
            if value in (None, "", []):
                continue
            out[name] = value
        return out


class JourneyCreateForm(TriggerForm):
    name = forms.CharField(label=_("旅程名称"), max_length=100)
    description = forms.CharField(label=_("说明"), max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    field_order = ["name", "description", "trigger_type"]


class StepForm(_Styled, forms.Form):
    """Every step type's fields; ``step()`` keeps the ones of the type."""

    wait_mode = forms.ChoiceField(label=_("等待方式"), choices=WAIT_MODES, required=False)
    wait_value = forms.IntegerField(label=_("时长"), required=False)
    wait_unit = forms.ChoiceField(label=_("单位"), choices=UNITS, required=False, initial="60")
    until_time = forms.CharField(label=_("等到（HH:MM）"), required=False, max_length=5)
    at = forms.CharField(label=_("交易日的时刻（HH:MM）"), required=False, max_length=5, initial="09:00")
    kind = forms.ChoiceField(label=_("分支条件"), choices=BRANCH_CHOICES, required=False)
    rule_segment = forms.TypedChoiceField(label=_("客户在客群中"), coerce=int, empty_value=None, required=False)
    rule_json = forms.CharField(label=_("或：规则 JSON（客群规则语言）"), required=False,
                                widget=forms.Textarea(attrs={"rows": 3, "class": "form-control form-control-sm font-monospace"}))
    within_hours = forms.IntegerField(label=_("回复时限（小时）"), required=False)
    cond_tag = forms.ChoiceField(label=_("标签"), required=False)
    percent_a = forms.IntegerField(label=_("A 组比例（%）"), required=False, initial=50)
    template = forms.IntegerField(label=_("消息模板"), required=False, widget=forms.Select)
    executor = forms.ChoiceField(label=_("执行人"), choices=EXECUTORS, required=False)
    group = forms.ChoiceField(label=_("客户群"), required=False)
    title = forms.CharField(label=_("任务标题"), required=False, max_length=200)
    due_hours = forms.IntegerField(label=_("几小时内完成"), required=False, initial=24)
    tag = forms.ChoiceField(label=_("标签"), required=False)
    event = forms.CharField(label=_("事件名"), required=False, initial="sop.step", max_length=60)

    FIELDS_FOR = {"wait": ["wait_mode", "wait_value", "wait_unit", "until_time", "at"],
                  "branch": ["kind", "rule_segment", "rule_json", "within_hours", "cond_tag", "percent_a"],
                  "task": ["title", "due_hours", "executor"], "tag_add": ["tag"], "tag_remove": ["tag"],
                  "group_invite": ["group"], "webhook": ["event"],
                  **{t: ["template", "executor"] for t in MESSAGE_STEPS},
                  "wecom_group_message": ["template", "executor", "group"]}
    SHOW_WHEN = {"wait_value": "wait_mode:minutes", "wait_unit": "wait_mode:minutes", "until_time": "wait_mode:until_time",
                 "at": "wait_mode:next_trading_day", "rule_segment": "kind:rule", "rule_json": "kind:rule",
                 "within_hours": "kind:replied", "cond_tag": "kind:tag", "percent_a": "kind:ab"}

    def __init__(self, *args, step_type: str, templates: dict | None = None, tags=(), segments=(), groups=(),
                 invite_groups=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.step_type = step_type
        self.templates = templates or {}
        for name in list(self.fields):
            if name not in self.FIELDS_FOR.get(step_type, []):
                del self.fields[name]
            elif name in self.SHOW_WHEN:
                self.fields[name].widget.attrs["data-show-when"] = self.SHOW_WHEN[name]
        if "tag" in self.fields:
            self.fields["tag"].choices = [("", "—"), *tags]
        if "cond_tag" in self.fields:
            self.fields["cond_tag"].choices = [("", "—"), *tags]
        if "rule_segment" in self.fields:
            self.fields["rule_segment"].choices = [("", "—"), *segments]
        if "group" in self.fields:
            self.fields["group"].choices = [("", "—"), *(invite_groups if step_type == "group_invite" else groups)]
        if "template" in self.fields:
            self.fields["template"].widget.choices = [("", "—")] + [
                (pk, _("%(name)s · v%(n)s 已批准") % {"name": t["name"], "n": t["approved"]["number"]} if t["approved"]
                 else _("%(name)s · 无已批准版本") % {"name": t["name"]})
                for pk, t in self.templates.items()]

    @staticmethod
    def initial_from(step: dict) -> dict:
        initial = {k: v for k, v in step.items() if k not in ("condition", "minutes")}
        if step.get("type") == "wait":
            mode = next((m for m, _label in WAIT_MODES if step.get(m) not in (None, False)), "minutes")
            initial["wait_mode"] = mode
            minutes = step.get("minutes") or 60
            unit = 1440 if minutes % 1440 == 0 else 60 if minutes % 60 == 0 else 1
            initial.update(wait_value=minutes // unit, wait_unit=str(unit))
        condition = step.get("condition") or {}
        if condition:
            initial.update(kind=condition.get("kind"), within_hours=condition.get("within_hours"),
                           cond_tag=condition.get("tag"), percent_a=condition.get("percent_a"))
            rule = condition.get("rule")
            segment = _single_segment(rule)
            if segment:
                initial["rule_segment"] = segment
            elif rule:
                initial["rule_json"] = json.dumps(rule, ensure_ascii=False)
        return initial

    def clean_template(self):
        pk = self.cleaned_data.get("template")
        if pk is not None and pk in self.templates and not self.templates[pk]["approved"]:
            raise forms.ValidationError(_("该模板没有合规已批准的版本，不能使用"))
        return pk

    def clean_rule_json(self):
        text = (self.cleaned_data.get("rule_json") or "").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(_("不是有效的 JSON：%(e)s") % {"e": exc}) from None

    def step(self, step_id: str) -> dict:
        d, kind = self.cleaned_data, self.step_type
        out = {"id": step_id, "type": kind}
        if kind == "wait":
            mode = d.get("wait_mode") or "minutes"
            if mode == "minutes":
                value = d.get("wait_value")
                out["minutes"] = value * int(d.get("wait_unit") or 1) if value is not None else None
            elif mode == "until_time":
                out["until_time"] = d.get("until_time") or ""
            else:
                out.update(next_trading_day=True, at=d.get("at") or "09:00")
        elif kind == "branch":
            condition = {"kind": d.get("kind") or ""}
            if condition["kind"] == "rule":
                condition["rule"] = d.get("rule_json") or (_segment_rule(d["rule_segment"]) if d.get("rule_segment") else None)
            elif condition["kind"] == "replied":
                condition["within_hours"] = d.get("within_hours")
            elif condition["kind"] == "tag":
                condition["tag"] = d.get("cond_tag") or None
            elif condition["kind"] == "ab":
                condition["percent_a"] = d.get("percent_a")
            out["condition"] = condition
        elif kind == "group_invite":
            out["group"] = _int_or_none(d.get("group"))
        else:
            for name in self.FIELDS_FOR.get(kind, []):
                value = d.get(name)
                if value not in (None, ""):
                    out[name] = value
        return out


def _segment_rule(segment_id: int) -> dict:
    return {"op": "and", "rules": [{"type": "segment", "op": "in", "segment": segment_id}]}


def _single_segment(rule) -> int | None:
    """The segment id when the rule is just "in segment N" (what the pickers write), else None."""
    if isinstance(rule, dict) and rule.get("op") == "and" and not rule.get("not") and len(rule.get("rules") or []) == 1:
        node = rule["rules"][0]
        if node.get("type") == "segment" and node.get("op") == "in" and not node.get("not"):
            return node.get("segment")
    return None


class SettingsForm(_Styled, forms.Form):
    name = forms.CharField(label=_("旅程名称"), max_length=100)
    description = forms.CharField(label=_("说明"), max_length=500, required=False)
    entry = forms.ChoiceField(label=_("准入条件"), required=False,
                              help_text=_("只有这个客群里的客户才会进入；留空 = 触发的客户都可进入"))
    goal_type = forms.ChoiceField(label=_("转化目标"), required=False,
                                  choices=[("", _("不设目标")), *[(k, v) for k, v in GOALS.items() if k != "none"]])
    goal_within_days = forms.IntegerField(label=_("目标期限（天）"), required=False, initial=14)
    goal_tag = forms.ChoiceField(label=_("目标标签"), required=False)
    holdout_percent = forms.IntegerField(label=_("对照组比例（%，0–50）"), required=False, initial=0)

    def __init__(self, *args, segments=(), tags=(), custom_rule: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        extra = [("custom", _("自定义规则（在 JSON 中编辑）"))] if custom_rule else []
        self.fields["entry"].choices = [("", _("不限")), *extra, *[(str(pk), name) for pk, name in segments]]
        self.fields["goal_tag"].choices = [("", "—"), *tags]
        self.fields["goal_within_days"].widget.attrs["data-show-when"] = "goal_type:" + ",".join(k for k in GOALS if k != "none")
        self.fields["goal_tag"].widget.attrs["data-show-when"] = "goal_type:tag"

    @staticmethod
    def initial_from(journey) -> tuple[dict, bool]:
        draft = journey.draft
        rule = draft.get("entry_rule")
        segment = _single_segment(rule)
        goal = draft.get("goal") or {}
        initial = {"name": journey.name, "description": journey.description,
                   "entry": str(segment) if segment else ("custom" if rule else ""),
                   "goal_type": goal.get("type", "") if goal.get("type") != "none" else "",
                   "goal_within_days": goal.get("within_days", 14), "goal_tag": goal.get("tag", ""),
                   "holdout_percent": draft.get("holdout_percent", 0)}
        return initial, bool(rule) and segment is None

    def apply(self, definition: dict) -> dict:
        d = self.cleaned_data
        new = dict(definition)
        if d.get("entry") == "custom":
            pass
        elif d.get("entry"):
            new["entry_rule"] = _segment_rule(int(d["entry"]))
        else:
            new.pop("entry_rule", None)
        if d.get("goal_type"):
            goal = {"type": d["goal_type"], "within_days": d.get("goal_within_days")}
            if d["goal_type"] == "tag":
                goal["tag"] = d.get("goal_tag") or None
            new["goal"] = goal
        else:
            new.pop("goal", None)
        new["holdout_percent"] = d.get("holdout_percent") or 0
        return new


class DefinitionJsonForm(forms.Form):
    definition = forms.CharField(label=_("定义（JSON）"), widget=forms.Textarea(
        attrs={"rows": 22, "class": "form-control font-monospace small", "spellcheck": "false"}))

    def clean_definition(self):
        try:
            value = json.loads(self.cleaned_data["definition"])
        except ValueError as exc:
            raise forms.ValidationError(_("不是有效的 JSON：%(e)s") % {"e": exc}) from None
        return value


class DryRunForm(_Styled, forms.Form):
    segment = forms.TypedChoiceField(label=_("用哪个客群试算"), coerce=int)

    def __init__(self, *args, segments=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["segment"].choices = list(segments)

