"""A journey's definition: a JSON document validated here, with the path of the first bad node.

    {"trigger": {"type": "tag_added", "tag": "margin_intent"},
     "entry_rule": {...segment rule...},                 optional filter on who may enter
     "start": "welcome",
     "steps": [
        {"id": "welcome", "type": "wecom_message", "template": 3, "executor": "advisor", "next": "wait1"},
        {"id": "wait1", "type": "wait", "minutes": 1440, "next": "check"},
        {"id": "check", "type": "branch", "condition": {"kind": "replied", "within_hours": 24},
         "then": null, "else": "call"},
        {"id": "call", "type": "task", "title": "电话回访：两融开通意向", "due_hours": 24, "executor": "advisor"}],
     "goal": {"type": "first_trade", "within_days": 14},
     "holdout_percent": 10}

Steps form a graph without cycles; ``next``/``then``/``else`` name another step or null (end).
"""

import re

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError

TRIGGERS = {
    "wecom_contact_added": _("企业微信添加好友"), "account_opened": _("开户完成"), "funnel_stage": _("开户进度到达"),
    "funnel_stalled": _("开户进度停滞"), "tag_added": _("打上标签"), "tier_changed": _("分层变化"),
    "segment_entered": _("进入客群"), "churn_risk": _("流失风险"), "date_field": _("日期字段（生日/风测到期）"),
    "schedule": _("定时（交易日）"), "manual": _("手动加入客群"),
}
MESSAGE_STEPS = {"wecom_message": "wecom", "wecom_group_message": "wecom_group", "sms": "sms", "app_push": "app_push"}
STEP_TYPES = {"wait", "branch", "task", "tag_add", "tag_remove", "group_invite", "webhook", *MESSAGE_STEPS}
GOALS = {"first_trade": _("首笔交易"), "account_opened": _("完成开户"), "funded": _("入金"), "margin_opened": _("开通两融"),
         "tag": _("获得标签"), "none": _("无")}
BRANCH_KINDS = {"rule", "replied", "tag", "ab"}
STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_STEPS = 50


class DefinitionError(ApplicationError):
    def __init__(self, path: str, message: str):
        super().__init__("invalid_journey", f"{path}: {message}", [{"path": path, "message": message}])
        self.path = path


def _int(node, key, path, low, high, required=True):
    value = node.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DefinitionError(f"{path}.{key}", gettext("应为 %(low)s–%(high)s 的整数") % {"low": low, "high": high})
    return value


def _validate_trigger(trigger, path):
    if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGERS:
        raise DefinitionError(f"{path}.type", gettext("未知触发类型，可用：%(types)s") % {"types": sorted(TRIGGERS)})
    kind = trigger["type"]
    if kind == "tag_added" and not isinstance(trigger.get("tag"), str):
        raise DefinitionError(f"{path}.tag", gettext("请指定标签代码"))
    if kind == "segment_entered" or kind == "manual":
        _int(trigger, "segment", path, 1, 2**31, required=kind == "segment_entered")
    if kind in ("funnel_stage", "funnel_stalled"):
        from customers.models import FunnelStage

        if trigger.get("stage") not in FunnelStage.values:
            raise DefinitionError(f"{path}.stage", gettext("应为 %(values)s 之一") % {"values": FunnelStage.values})
        if kind == "funnel_stalled":
            _int(trigger, "hours", path, 1, 24 * 90)
    if kind == "date_field":
        if trigger.get("field") not in ("birthday", "risk_assessment_expiry"):
            raise DefinitionError(f"{path}.field", gettext("应为 birthday 或 risk_assessment_expiry"))
        _int(trigger, "days_before", path, 0, 90)
    if kind == "schedule":
        if not TIME.match(str(trigger.get("at", ""))):
            raise DefinitionError(f"{path}.at", gettext("应为 HH:MM"))
        if trigger.get("days", "trading") not in ("trading", "every"):
            raise DefinitionError(f"{path}.days", gettext("应为 trading 或 every"))
        _int(trigger, "segment", path, 1, 2**31)
    if kind == "tier_changed" and trigger.get("to") is not None and not isinstance(trigger["to"], list):
        raise DefinitionError(f"{path}.to", gettext("应为分层代码列表"))


def _validate_step(step, path, ids):
    kind = step.get("type")
    if kind not in STEP_TYPES:
        raise DefinitionError(f"{path}.type", gettext("未知步骤类型，可用：%(types)s") % {"types": sorted(STEP_TYPES)})
    if step.get("executor", "system") not in ("system", "advisor"):
        raise DefinitionError(f"{path}.executor", gettext("应为 system 或 advisor"))
    targets = ["then", "else"] if kind == "branch" else ["next"]
    for key in targets:
        target = step.get(key)
        if target is not None and target not in ids:
            raise DefinitionError(f"{path}.{key}", gettext("步骤 %(step)r 不存在") % {"step": target})
    if kind == "wait":
        given = [k for k in ("minutes", "until_time", "next_trading_day")
                 if step.get(k) is not None and step.get(k) is not False and step.get(k) != ""]
        if not given and "minutes" in step:
            raise DefinitionError(f"{path}.minutes", gettext("请填写等待时长"))
        if len(given) != 1:
            raise DefinitionError(path, gettext("等待步骤须且只能指定 minutes、until_time 或 next_trading_day 之一"))
        if "minutes" in given and isinstance(step["minutes"], int) and not isinstance(step["minutes"], bool) \
                and step["minutes"] < 1:
            raise DefinitionError(f"{path}.minutes", gettext("等待时长至少 1 分钟"))
        if "minutes" in given:
            _int(step, "minutes", path, 1, 60 * 24 * 90)
        if "until_time" in given and not TIME.match(str(step["until_time"])):
            raise DefinitionError(f"{path}.until_time", gettext("应为 HH:MM"))
        if "next_trading_day" in given and not TIME.match(str(step.get("at", "09:00"))):
            raise DefinitionError(f"{path}.at", gettext("应为 HH:MM"))
    elif kind == "branch":
        condition = step.get("condition")
        if not isinstance(condition, dict) or condition.get("kind") not in BRANCH_KINDS:
            raise DefinitionError(f"{path}.condition.kind", gettext("应为 %(values)s 之一") % {"values": sorted(BRANCH_KINDS)})
        if condition["kind"] == "rule":
            from segments.rules import RuleError, rule_validate

            try:
                rule_validate(condition.get("rule"))
            except RuleError as exc:
                raise DefinitionError(f"{path}.condition.rule{exc.path[1:]}", exc.details[0]["message"]) from None
        elif condition["kind"] == "replied":
            _int(condition, "within_hours", f"{path}.condition", 1, 24 * 30)
        elif condition["kind"] == "tag" and not isinstance(condition.get("tag"), str):
            raise DefinitionError(f"{path}.condition.tag", gettext("请指定标签代码"))
        elif condition["kind"] == "ab":
            _int(condition, "percent_a", f"{path}.condition", 1, 99)
    elif kind in MESSAGE_STEPS:
        _int(step, "template", path, 1, 2**31)
        if kind == "wecom_group_message" and not isinstance(step.get("group"), str):
            raise DefinitionError(f"{path}.group", gettext("请指定群（chat_id）"))
    elif kind == "task":
        if not isinstance(step.get("title"), str) or not step["title"].strip() or len(step["title"]) > 200:
            raise DefinitionError(f"{path}.title", gettext("请填写任务标题（不超过 200 字）"))
        _int(step, "due_hours", path, 1, 24 * 30)
    elif kind in ("tag_add", "tag_remove") and not isinstance(step.get("tag"), str):
        raise DefinitionError(f"{path}.tag", gettext("请指定标签代码"))
    elif kind == "group_invite":
        _int(step, "group", path, 1, 2**31)
    elif kind == "webhook" and not isinstance(step.get("event", "sop.step"), str):
        raise DefinitionError(f"{path}.event", gettext("应为字符串"))


def definition_validate(definition) -> None:
    """Raise DefinitionError naming the path of the first problem; references to templates, tags and
    groups are checked against the database."""
    if not isinstance(definition, dict):
        raise DefinitionError("$", gettext("应为对象"))
    _validate_trigger(definition.get("trigger"), "$.trigger")
    if definition.get("entry_rule") is not None:
        from segments.rules import RuleError, rule_validate

        try:
            rule_validate(definition["entry_rule"])
        except RuleError as exc:
            raise DefinitionError(f"$.entry_rule{exc.path[1:]}", exc.details[0]["message"]) from None
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps or len(steps) > MAX_STEPS:
        raise DefinitionError("$.steps", gettext("应有 1–%(n)s 个步骤") % {"n": MAX_STEPS})
    ids = {}
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not STEP_ID.match(str(step.get("id", ""))):
            raise DefinitionError(f"$.steps[{i}].id", gettext("步骤 id 应为 1–40 位字母、数字、_ 或 -"))
        if step["id"] in ids:
            raise DefinitionError(f"$.steps[{i}].id", gettext("步骤 id %(id)r 重复") % {"id": step["id"]})
        ids[step["id"]] = step
    for i, step in enumerate(steps):
        _validate_step(step, f"$.steps[{i}]", ids)
    if definition.get("start") not in ids:
        raise DefinitionError("$.start", gettext("起始步骤不存在"))
    _check_graph(definition["start"], ids)
    goal = definition.get("goal")
    if goal is not None:
        if not isinstance(goal, dict) or goal.get("type") not in GOALS:
            raise DefinitionError("$.goal.type", gettext("应为 %(values)s 之一") % {"values": sorted(GOALS)})
        _int(goal, "within_days", "$.goal", 1, 365)
        if goal["type"] == "tag" and not isinstance(goal.get("tag"), str):
            raise DefinitionError("$.goal.tag", gettext("请指定标签代码"))
    _int(definition, "holdout_percent", "$", 0, 50, required=False)
    _check_references(definition)


def successors(step: dict) -> list[str]:
    keys = ("then", "else") if step["type"] == "branch" else ("next",)
    return [step[k] for k in keys if step.get(k)]


def _check_graph(start, ids):
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "open":
            raise DefinitionError("$.steps", gettext("步骤形成循环：%(steps)s") % {"steps": " → ".join([*trail, node])})
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in successors(ids[node]):
            visit(nxt, [*trail, node])
        state[node] = "done"

    visit(start, [])
    unreachable = sorted(set(ids) - set(state))
    if unreachable:
        raise DefinitionError("$.steps", gettext("这些步骤从起点无法到达：%(steps)s") % {"steps": unreachable})


def _check_references(definition):
    from sop.models import MessageTemplate
    from tagging.models import Tag

    for i, step in enumerate(definition["steps"]):
        path = f"$.steps[{i}]"
        if step["type"] in MESSAGE_STEPS:
            template = MessageTemplate.objects.filter(pk=step["template"]).first()
            if template is None:
                raise DefinitionError(f"{path}.template", gettext("模板不存在"))
            if template.channel != MESSAGE_STEPS[step["type"]]:
                raise DefinitionError(f"{path}.template",
                                      gettext("模板渠道为 %(channel)s，与步骤不符") % {"channel": template.get_channel_display()})
        tag = step.get("tag") or (step.get("condition") or {}).get("tag")
        if tag and not Tag.objects.filter(code=tag, active=True).exists():
            raise DefinitionError(f"{path}.tag", gettext("标签 %(tag)r 不存在或已停用") % {"tag": tag})
    trigger_tag = definition["trigger"].get("tag")
    if trigger_tag and not Tag.objects.filter(code=trigger_tag).exists():
        raise DefinitionError("$.trigger.tag", gettext("标签 %(tag)r 不存在") % {"tag": trigger_tag})
