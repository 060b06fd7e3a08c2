"""Editing a rule tree in the builder page: node paths, the structural operations (add a condition, add a
nested group, NOT, remove, AND/OR), applying the posted condition editors to the tree, and turning the tree
into rows the template renders.

Paths are the ones the rule validator reports: ``$`` is the root group, ``$.rules[1].rules[0]`` the first
child of the second child. The page keeps the whole tree in a hidden JSON input; every condition editor
posts ``f:<node path>:<key>`` fields that override the JSON, so what the user sees is what is saved.
"""

import re
from decimal import Decimal, InvalidOperation

from segments import rules as rule_lang

PATH_RE = re.compile(r"^\$((?:\.rules\[\d+\])*)$")
STEP_RE = re.compile(r"\.rules\[(\d+)\]")
NODE_PATH_RE = re.compile(r"^\$(?:\.rules\[\d+\])*")

EMPTY_RULE = {"op": "and", "rules": []}
CONDITION_TYPES = ["attribute", "custom", "tag", "tier", "tier_change", "trades", "events", "group", "segment"]
LIST_OPS = {"in", "not_in"}


class BuilderError(ValueError):
    pass


def path_steps(path: str) -> list[int]:
    match = PATH_RE.match(path or "")
    if not match:
        raise BuilderError(f"无效的节点路径 {path!r}")
    return [int(i) for i in STEP_RE.findall(match.group(1))]


def path_join(steps: list[int]) -> str:
    return "$" + "".join(f".rules[{i}]" for i in steps)


def node_at(tree: dict, path: str) -> dict:
    node = tree
    for i in path_steps(path):
        children = node.get("rules") if isinstance(node, dict) else None
        if not isinstance(children, list) or not 0 <= i < len(children):
            raise BuilderError(f"节点 {path} 不存在")
        node = children[i]
    return node


def node_path_of_error(error_path: str) -> str:
    """The node an error path points into: ``$.rules[0].value[1]`` → ``$.rules[0]``."""
    match = NODE_PATH_RE.match(error_path or "$")
    return match.group(0) if match else "$"


def is_group(node) -> bool:
    return isinstance(node, dict) and ("rules" in node or node.get("op") in ("and", "or")) and "type" not in node


# --- defaults for a new condition of each type ------------------------------------------------

def default_condition(kind: str = "attribute") -> dict:
    if kind == "tag":
        from tagging.models import Tag

        first = Tag.objects.order_by("category__code", "code").values_list("code", flat=True).first()
        return {"type": "tag", "op": "has", "tag": first or ""}
    if kind == "tier":
        tiers = tier_choices()
        return {"type": "tier", "op": "in", "value": [tiers[0][0]] if tiers else []}
    if kind == "tier_change":
        return {"type": "tier_change", "direction": "down", "within_days": 30}
    if kind == "trades":
        return {"type": "trades", "measure": "count", "op": "gte", "value": 1, "within_days": 90}
    if kind == "events":
        return {"type": "events", "event_type": "app_login", "op": "gte", "value": 1, "within_days": 30}
    if kind == "group":
        return {"type": "group", "op": "member"}
    if kind == "segment":
        return {"type": "segment", "op": "in"}
    if kind == "custom":
        from customers.custom_fields import definitions_active

        first = next(iter(definitions_active()), None)
        return custom_default(first.code if first else "")
    return attribute_default("risk_level")


def custom_default(code: str) -> dict:
    """A new condition on custom field ``code``: its type's first operator and a value that fits it."""
    from customers.custom_fields import OPS, definition_get

    definition = definition_get(code)
    if definition is None:
        return {"type": "custom", "field": code, "op": "is_set"}
    node = {"type": "custom", "field": code, "op": OPS[definition.type][0]}
    if definition.type in ("choice", "multi_choice"):
        node["value"] = definition.options[0] if definition.type == "choice" else definition.options[:1]
    elif definition.type == "number":
        node["value"] = 0
    elif definition.type == "date":
        from django.utils import timezone

        node["value"] = timezone.localdate().isoformat()
    else:
        node["value"] = ""
    return node


def attribute_default(field: str) -> dict:
    kind = rule_lang.ATTRIBUTE_FIELDS.get(field, ("choice", None))[0]
    node = {"type": "attribute", "field": field}
    if kind == "choice":
        choices = attribute_choices(field)
        node.update(op="in", value=[choices[0][0]] if choices else [])
    elif kind == "text":
        node.update(op="eq", value="")
    elif kind == "bool":
        node.update(op="is_true")
    else:
        node.update(op="gte", value=0)
    return node


# --- structural operations --------------------------------------------------------------------

def apply_operation(tree: dict, operation: str, path: str) -> dict:
    """Return a new tree with ``operation`` applied at ``path`` (the tree is not modified)."""
    import copy

    tree = copy.deepcopy(tree) if isinstance(tree, dict) else copy.deepcopy(EMPTY_RULE)
    if not is_group(tree):  # a single condition at the root: wrap it so children can be added
        tree = {"op": "and", "rules": [tree]}
    steps = path_steps(path)
    node = node_at(tree, path)
    if operation in ("add_condition", "add_group"):
        if not is_group(node):
            raise BuilderError("只能在条件组里添加")
        if operation == "add_condition":
            child = default_condition()
        else:  # a new group starts empty: it counts for nothing until a condition is put in it (see rule_effective)
            child = {"op": "or" if node.get("op") == "and" else "and", "rules": []}
        node.setdefault("rules", []).append(child)
    elif operation == "toggle_not":
        if node.get("not"):
            node.pop("not")
        else:
            node["not"] = True
    elif operation == "toggle_op":
        if not is_group(node):
            raise BuilderError("只有条件组可以切换且/或")
        node["op"] = "or" if node.get("op") == "and" else "and"
    elif operation == "remove":
        if not steps:
            tree = {"op": "and", "rules": []}
        else:
            parent = node_at(tree, path_join(steps[:-1]))
            parent["rules"].pop(steps[-1])
    elif operation:
        raise BuilderError(f"未知操作 {operation!r}")
    return tree


def rule_effective(tree: dict) -> tuple[dict, dict[str, str]]:
    """The rule the builder counts and saves: ``tree`` without its empty nested groups (a group just added, still
    without conditions, changes nothing), and a map from the node paths of the result back to the node paths in
    ``tree`` (to point an error at the node the user sees). An empty root stays as it is."""
    mapping: dict[str, str] = {}

    def prune(node, old_steps, new_steps):
        mapping[path_join(new_steps)] = path_join(old_steps)
        if not is_group(node):
            return node
        kept = []
        for i, child in enumerate(node.get("rules") or []):
            if is_group(child) and not _has_condition(child):
                continue
            kept.append(prune(child, [*old_steps, i], [*new_steps, len(kept)]))
        return {**node, "rules": kept}

    return prune(tree, [], []), mapping


def _has_condition(node) -> bool:
    return any(True for _ in _summary_nodes(node))


def error_path_in_tree(error_path: str | None, mapping: dict[str, str]) -> str | None:
    """An error path reported on ``rule_effective``'s result, as a path in the tree the builder shows."""
    if not error_path:
        return error_path
    node = node_path_of_error(error_path)
    return mapping.get(node, node) + error_path[len(node):]


# --- posted condition editors -----------------------------------------------------------------

def _number(raw: str):
    raw = (raw or "").strip()
    if raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return raw  # the validator names the path and says it should be a number
    return int(value) if value == value.to_integral_value() else float(value)


def fields_from_post(post) -> dict[str, dict[str, list[str]]]:
    """``{node path: {key: [values]}}`` from the posted ``f:<path>:<key>`` fields."""
    out: dict[str, dict[str, list[str]]] = {}
    for name in post:
        if not name.startswith("f:"):
            continue
        _f, path, key = name.split(":", 2) if name.count(":") >= 2 else (None, None, None)
        if path is None:
            continue
        out.setdefault(path, {})[key] = post.getlist(name)
    return out


def apply_fields(tree: dict, fields: dict[str, dict[str, list[str]]]) -> dict:
    """Write posted editor values into the nodes they belong to. A changed condition type or attribute
    field starts that node over with the new type's defaults (its other values no longer fit)."""
    import copy

    tree = copy.deepcopy(tree)
    for path in sorted(fields, key=len):
        try:
            node = node_at(tree, path)
        except BuilderError:
            continue
        _apply_node(tree, path, node, fields[path])
    return tree


def _first(values: dict, key: str, default: str = "") -> str:
    got = values.get(key)
    return got[0] if got else default


def _replace(tree, path, new):
    steps = path_steps(path)
    if not steps:
        tree.clear()
        tree.update(new)
        return new
    parent = node_at(tree, path_join(steps[:-1]))
    parent["rules"][steps[-1]] = new
    return new


def _apply_node(tree, path, node, values):
    negated = node.get("not")
    if is_group(node):
        if _first(values, "op") in ("and", "or"):
            node["op"] = _first(values, "op")
        return
    kind = _first(values, "type", node.get("type"))
    if kind != node.get("type"):
        node = _replace(tree, path, default_condition(kind))
        if negated:
            node["not"] = True
        return
    if kind == "attribute":
        field = _first(values, "field", node.get("field"))
        if field != node.get("field"):
            node = _replace(tree, path, attribute_default(field))
            if negated:
                node["not"] = True
            return
        _apply_attribute(node, values)
    elif kind == "custom":
        field = _first(values, "field", node.get("field"))
        if field != node.get("field"):
            node = _replace(tree, path, custom_default(field))
            if negated:
                node["not"] = True
            return
        _apply_custom(node, values)
    elif kind == "tag":
        node["op"] = _first(values, "op", node.get("op"))
        _optional_text(node, values, "tag", "category", "source")
        _window(node, values, required=False)
    elif kind == "tier":
        node["op"] = _first(values, "op", node.get("op"))
        if "_present" in values:
            node["value"] = [v for v in values.get("value", []) if v]
    elif kind == "tier_change":
        node["direction"] = _first(values, "direction", node.get("direction"))
        if "_present" in values:
            chosen = [v for v in values.get("to", []) if v]
            if chosen:
                node["to"] = chosen
            else:
                node.pop("to", None)
        _window(node, values, required=True)
    elif kind in ("trades", "events"):
        if kind == "trades":
            node["measure"] = _first(values, "measure", node.get("measure"))
            _optional_text(node, values, "product_type")
        else:
            node["event_type"] = _first(values, "event_type", node.get("event_type"))
            if "properties" in values:
                props = _properties(_first(values, "properties"))
                if props:
                    node["properties"] = props
                else:
                    node.pop("properties", None)
        node["op"] = _first(values, "op", node.get("op"))
        if "value" in values:
            node["value"] = _number(_first(values, "value"))
        _window(node, values, required=True)
    elif kind == "group":
        node["op"] = _first(values, "op", node.get("op"))
        _optional_text(node, values, "group", "purpose")
    elif kind == "segment":
        node["op"] = _first(values, "op", node.get("op"))
        if "segment" in values:
            raw = _first(values, "segment").strip()
            node["segment"] = int(raw) if raw.isdigit() else (raw or None)
            if node["segment"] is None:
                node.pop("segment")


def _optional_text(node, values, *keys):
    """Posted optional text fields: a value sets the key, a blank one leaves the key out (never null)."""
    for key in keys:
        if key in values:
            raw = _first(values, key).strip()
            if raw:
                node[key] = raw
            else:
                node.pop(key, None)


def _window(node, values, *, required):
    if "within_days" not in values:
        return
    days = _number(_first(values, "within_days"))
    if days is None and not required:
        node.pop("within_days", None)
    else:
        node["within_days"] = days


def _properties(text: str) -> dict:
    """``key=value`` pairs, one a line or separated by commas."""
    props = {}
    for part in re.split(r"[\n,，]", text or ""):
        if "=" in part:
            key, value = part.split("=", 1)
            if key.strip():
                props[key.strip()] = value.strip()
    return props


def properties_text(props) -> str:
    return ", ".join(f"{k}={v}" for k, v in (props or {}).items())


def _apply_attribute(node, values):
    field = node["field"]
    kind = rule_lang.ATTRIBUTE_FIELDS.get(field, ("text", None))[0]
    old_op = node.get("op")
    op = _first(values, "op", old_op)
    node["op"] = op
    if kind == "bool":
        node.pop("value", None)
        return
    if op in LIST_OPS:
        if kind == "choice" or field in ("branch", "advisor"):
            raw = values.get("value", []) if "_present" in values else node.get("value", [])
            items = raw if isinstance(raw, list) else [raw]
        else:
            text = ",".join(values["value"]) if "value" in values else (
                ",".join(node["value"]) if isinstance(node.get("value"), list) else str(node.get("value") or ""))
            items = re.split(r"[,，\s]+", text)
        node["value"] = [str(v).strip() for v in items if v is not None and str(v).strip()]
    elif op == "between":
        if "value_low" in values or "value_high" in values:
            node["value"] = [_number(_first(values, "value_low")), _number(_first(values, "value_high"))]
        elif not isinstance(node.get("value"), list):
            node["value"] = [node.get("value") if node.get("value") not in (None, "") else 0, None]
    elif kind in ("number", "age", "days_ago"):
        if "value" in values:
            node["value"] = _number(_first(values, "value"))
        elif isinstance(node.get("value"), list):
            node["value"] = node["value"][0] if node["value"] else None
    else:  # a single text or choice
        if old_op in LIST_OPS and op not in LIST_OPS and isinstance(node.get("value"), list):
            node["value"] = node["value"][0] if node["value"] else ""
        elif "value" in values:
            node["value"] = _first(values, "value").strip()
        elif isinstance(node.get("value"), list):
            node["value"] = node["value"][0] if node["value"] else ""


def _apply_custom(node, values):
    """A custom field condition's posted editor: the operator, then the value in the shape the operator takes
    (none, a list, [low, high] or one value; numbers as numbers, dates and text as text)."""
    from customers.custom_fields import LIST_OPS as CUSTOM_LIST_OPS
    from customers.custom_fields import NO_VALUE_OPS, definition_get

    definition = definition_get(node.get("field"))
    field_type = definition.type if definition else "text"
    op = _first(values, "op", node.get("op"))
    node["op"] = op

    def scalar(raw):
        raw = (raw or "").strip()
        return _number(raw) if field_type == "number" else raw

    if op in NO_VALUE_OPS:
        node.pop("value", None)
    elif op in CUSTOM_LIST_OPS:
        if field_type in ("choice", "multi_choice"):
            raw = values.get("value", []) if "_present" in values else node.get("value", [])
            items = raw if isinstance(raw, list) else [raw]
        else:
            text = ",".join(values["value"]) if "value" in values else (
                ",".join(str(v) for v in node["value"]) if isinstance(node.get("value"), list) else str(node.get("value") or ""))
            items = re.split(r"[,，\n]+", text)
        node["value"] = [str(v).strip() for v in items if v is not None and str(v).strip()]
    elif op == "between":
        if "value_low" in values or "value_high" in values:
            node["value"] = [scalar(_first(values, "value_low")), scalar(_first(values, "value_high"))]
        elif not isinstance(node.get("value"), list):
            node["value"] = [node.get("value") if node.get("value") not in (None, "") else scalar(""), scalar("")]
    elif "value" in values:
        node["value"] = scalar(_first(values, "value"))
    elif isinstance(node.get("value"), list):
        node["value"] = node["value"][0] if node["value"] else scalar("")
    elif "value" not in node:
        node["value"] = scalar("")


# --- choices the editors offer ------------------------------------------------------------------

def attribute_choices(field: str) -> list[tuple[str, str]]:
    from customers.models import FunnelStage, Gender, LifecycleStage, RiskLevel

    return {"risk_level": RiskLevel.choices, "gender": Gender.choices, "lifecycle_stage": LifecycleStage.choices,
            "funnel_stage": FunnelStage.choices}.get(field, [])


def tier_choices() -> list[tuple[str, str]]:
    from tagging.models import TierDefinition

    return [(d.code, d.label) for d in TierDefinition.objects.filter(scheme__active=True).order_by("rank", "code")]


def branch_choices(principal) -> list[tuple[str, str]]:
    from core.models import Branch
    from core.scoping import scope_for

    scope = scope_for(principal)
    qs = Branch.objects.order_by("code")
    if not scope.everything:
        qs = qs.filter(pk=scope.branch_id) if scope.branch_id else qs.none()
    return [(b.code, f"{b.name}（{b.code}）") for b in qs]


def advisor_choices(principal) -> list[tuple[str, str]]:
    from core.models import Role, User
    from core.scoping import scope_for

    scope = scope_for(principal)
    qs = User.objects.filter(role=Role.ADVISOR, is_active=True, employee_code__isnull=False).order_by("employee_code")
    if not scope.everything:
        qs = qs.filter(branch_id=scope.branch_id) if scope.branch_id else qs.none()
    return [(u.employee_code, f"{u.display_name or u.username}（{u.employee_code}）") for u in qs]


# --- what the template renders ------------------------------------------------------------------

def _labels():
    from django.utils.translation import gettext as _

    return {
        "ops": {"eq": _("等于"), "ne": _("不等于"), "in": _("属于"), "not_in": _("不属于"), "contains": _("包含"),
                "gt": _("大于"), "gte": _("大于等于"), "lt": _("小于"), "lte": _("小于等于"), "between": _("介于"),
                "is_true": _("是"), "is_false": _("否"), "has": _("有"), "has_not": _("没有"),
                "member": _("在群内"), "not_member": _("不在群内"), "entered": _("进入"), "left": _("离开"),
                "has_any": _("包含任一"), "has_all": _("包含全部"), "is_set": _("有值"), "is_not_set": _("无值")},
        "types": {"attribute": _("客户属性"), "tag": _("标签"), "tier": _("价值分层"), "tier_change": _("分层变化"),
                  "trades": _("交易"), "events": _("行为事件"), "group": _("社群"), "segment": _("其他客群"),
                  "custom": _("自定义字段")},
        "fields": {"risk_level": _("风险等级"), "gender": _("性别"), "region": _("地区"), "occupation": _("职业"),
                   "branch": _("营业部"), "advisor": _("投顾"), "lifecycle_stage": _("生命周期"),
                   "funnel_stage": _("开户进度"), "channel": _("开户渠道"), "utm_source": _("推广来源（utm_source）"),
                   "utm_medium": _("推广媒介（utm_medium）"), "utm_campaign": _("推广活动（utm_campaign）"),
                   "total_assets": _("总资产（元）"),
                   "age": _("年龄（岁）"), "opened_days_ago": _("开户天数"),
                   "risk_assessment_current": _("风险测评在有效期内"), "is_wecom_contact": _("是企业微信联系人")},
        "measures": {"count": _("笔数"), "amount": _("金额（元）")},
        "directions": {"down": _("降级"), "up": _("升级"), "any": _("任意变化")},
    }


def _op_choices(codes, labels):
    return [(c, labels["ops"].get(c, c)) for c in codes]


def _type_label(kind, labels: dict) -> str:
    """A condition type's name: the builder's own, or the one the area that added the type registered."""
    extension = rule_lang.CONDITION_EXTENSIONS.get(kind)
    return str(labels["types"].get(kind) or (extension[2] if extension else kind))


def condition_view(node: dict, *, principal, labels: dict, context: dict) -> dict:
    """Everything one condition row's editor needs: its kind, the ops and value choices it offers."""
    from customers.models import EVENT_TYPE_LABELS, PRODUCT_TYPE_LABELS

    kind = node.get("type")
    view = {"kind": kind, "type_choices": [(t, labels["types"][t]) for t in CONDITION_TYPES
                                           if t in context["available_types"] or t == kind]}
    if kind not in CONDITION_TYPES:  # a condition another area added (e.g. the funnel's sign-up dates): kept as is
        view["type_choices"].insert(0, (kind, _type_label(kind, labels)))
    if kind == "attribute":
        field = node.get("field")
        fkind = rule_lang.ATTRIBUTE_FIELDS.get(field, ("text", None))[0]
        ops = sorted(rule_lang.OPS.get(fkind, ()), key=["eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt",
                                                         "lte", "between", "is_true", "is_false"].index)
        choices = attribute_choices(field)
        if field == "branch":
            choices = context["branches"]
        elif field == "advisor":
            choices = context["advisors"]
        value = node.get("value")
        view.update(field_choices=[(f, labels["fields"].get(f, f)) for f in rule_lang.ATTRIBUTE_FIELDS],
                    field_kind=fkind, ops=_op_choices(ops, labels), choices=choices,
                    value_list=value if isinstance(value, list) else ([] if value in (None, "") else [value]),
                    value_text=",".join(str(v) for v in value) if isinstance(value, list) else
                    ("" if value is None else str(value)),
                    widget=("none" if fkind == "bool" else "between" if node.get("op") == "between"
                            else "multi" if node.get("op") in LIST_OPS and choices
                            else "list_text" if node.get("op") in LIST_OPS
                            else "select" if choices else "number" if fkind in ("number", "age", "days_ago")
                            else "text"))
        if view["widget"] == "between":
            low, high = (list(value) + [None, None])[:2] if isinstance(value, list) else (value, None)
            view.update(low="" if low is None else low, high="" if high is None else high)
    elif kind == "tag":
        view.update(ops=_op_choices(["has", "has_not"], labels), tags=context["tags"],
                    categories=context["categories"], sources=context["sources"])
    elif kind == "tier":
        view.update(ops=_op_choices(["in", "not_in"], labels), choices=context["tiers"], value_list=node.get("value") or [])
    elif kind == "tier_change":
        view.update(directions=[("down", labels["directions"]["down"]), ("up", labels["directions"]["up"]),
                                ("any", labels["directions"]["any"])], choices=context["tiers"],
                    value_list=node.get("to") or [])
    elif kind == "trades":
        view.update(ops=_op_choices(["gte", "gt", "eq", "ne", "lte", "lt"], labels),
                    measures=list(labels["measures"].items()),
                    product_types=[(k, str(v)) for k, v in PRODUCT_TYPE_LABELS.items()])
    elif kind == "events":
        view.update(ops=_op_choices(["gte", "gt", "eq", "ne", "lte", "lt"], labels),
                    event_types=[(k, str(v)) for k, v in EVENT_TYPE_LABELS.items()],
                    properties_text=properties_text(node.get("properties")))
    elif kind == "group":
        view.update(ops=_op_choices(["member", "not_member"], labels), groups=context["groups"],
                    purposes=context["purposes"])
    elif kind == "segment":
        view.update(ops=_op_choices(["in", "not_in"], labels), segments=context["segments"])
    elif kind == "custom":
        view.update(_custom_view(node, labels, context))
    else:
        view.update(ops=[], unknown=True, summary=rule_summary({k: v for k, v in node.items() if k != "not"}))
    return view


def _custom_view(node: dict, labels: dict, context: dict) -> dict:
    """The editor of a custom field condition: the active fields (and this node's own, even if deactivated),
    the operators of its type and the value widget they take."""
    from django.utils.translation import gettext as _

    from customers.custom_fields import LIST_OPS as CUSTOM_LIST_OPS
    from customers.custom_fields import NO_VALUE_OPS, OPS

    definitions = context["custom_fields"]
    definition = definitions.get(node.get("field"))
    field_choices = [(d.code, d.label) for d in definitions.values() if d.active]
    if definition is not None and not definition.active:
        field_choices.append((definition.code, _("%(label)s（已停用）") % {"label": definition.label}))
    field_type = definition.type if definition else "text"
    op = node.get("op")
    value = node.get("value")
    options = [(o, o) for o in (definition.options if definition else [])]
    if isinstance(value, list):  # values no longer among the options stay visible (and selected)
        options += [(v, _("%(v)s（已删除的选项）") % {"v": v}) for v in value if isinstance(v, str) and (v, v) not in options]
    elif isinstance(value, str) and value and options and (value, value) not in options:
        options.append((value, _("%(v)s（已删除的选项）") % {"v": value}))
    if op in NO_VALUE_OPS:
        widget = "none"
    elif op == "between":
        widget = "between"
    elif op in CUSTOM_LIST_OPS:
        widget = "multi" if options else "list_text"
    elif options:
        widget = "select"
    else:
        widget = {"number": "number", "date": "date"}.get(field_type, "text")
    view = {"field_choices": field_choices, "field_type": field_type, "options": options, "widget": widget,
            "ops": _op_choices(OPS.get(field_type, ()), labels),
            "value_list": [str(v) for v in value] if isinstance(value, list) else ([] if value in (None, "") else [str(value)]),
            "value_text": ",".join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))}
    if widget == "between":
        low, high = (list(value) + [None, None])[:2] if isinstance(value, list) else (value, None)
        view.update(low="" if low is None else low, high="" if high is None else high)
    return view


def builder_context(principal, *, exclude_segment_id=None) -> dict:
    """Choices shared by every condition editor on the page (queried once per render)."""
    from groups.models import GroupChat, Purpose
    from segments.selectors import segments_visible_to
    from tagging.models import Tag, TagCategory, TagSource

    segments = segments_visible_to(principal).filter(archived=False)
    if exclude_segment_id:
        segments = segments.exclude(pk=exclude_segment_id)
    from customers.custom_fields import definitions_by_code

    custom_fields = definitions_by_code()
    available = set(CONDITION_TYPES) & {*rule_lang._VALIDATORS, *rule_lang.CONDITION_EXTENSIONS}
    if not any(d.active for d in custom_fields.values()):
        available.discard("custom")
    return {
        "available_types": available, "custom_fields": custom_fields,
        "branches": branch_choices(principal), "advisors": advisor_choices(principal), "tiers": tier_choices(),
        "tags": [(t.code, f"{t.category.name} · {t.name}") for t in
                 Tag.objects.select_related("category").order_by("category__code", "code")],
        "categories": [(c.code, c.name) for c in TagCategory.objects.order_by("code")],
        "sources": list(TagSource.choices),
        "segments": [(s.pk, s.name) for s in segments.order_by("name")[:500]],
        "groups": [(g.chat_id, g.name) for g in GroupChat.objects.visible_to(principal).order_by("name")[:500]],
        "purposes": list(Purpose.choices),
    }


def render_nodes(tree: dict, *, principal, error_path: str | None = None, exclude_segment_id=None) -> dict:
    """The tree as nested dicts for the template: each node with its path, and conditions with their editor."""
    labels = _labels()
    context = builder_context(principal, exclude_segment_id=exclude_segment_id)
    bad = node_path_of_error(error_path) if error_path else None

    def walk(node, steps, depth):
        path = path_join(steps)
        slug = "n" + "".join(f"-{i}" for i in steps)
        if is_group(node):
            return {"path": path, "group": True, "op": node.get("op", "and"), "negated": bool(node.get("not")),
                    "depth": depth, "error": path == bad, "slug": slug,
                    "children": [walk(child, [*steps, i], depth + 1) for i, child in enumerate(node.get("rules") or [])]}
        return {"path": path, "group": False, "negated": bool(node.get("not")), "node": node, "depth": depth,
                "error": path == bad, "slug": slug, "editor": condition_view(node, principal=principal, labels=labels,
                                                              context=context)}

    if not is_group(tree):
        tree = {"op": "and", "rules": [tree]}
    return walk(tree, [], 0)


def _summary_nodes(rule):
    """Every condition of a tree (depth first)."""
    if not isinstance(rule, dict):
        return
    if is_group(rule):
        for child in rule.get("rules") or []:
            yield from _summary_nodes(child)
    else:
        yield rule


def summary_names(rule) -> dict:
    """The words for the codes a rule names (tags, tag categories, tiers, segments, groups, branches, advisors):
    ``{(kind, code): label}``, a few queries for the whole tree."""
    from core.models import Branch, User
    from groups.models import GroupChat
    from segments.models import Segment
    from tagging.models import Tag, TagCategory

    wanted: dict[str, set] = {"tag": set(), "category": set(), "segment": set(), "group": set(), "branch": set(),
                              "advisor": set()}
    tiers = False
    for node in _summary_nodes(rule):
        kind = node.get("type")
        if kind == "tag":
            wanted["tag"].add(node.get("tag"))
            wanted["category"].add(node.get("category"))
        elif kind in ("tier", "tier_change"):
            tiers = True
        elif kind == "segment" and isinstance(node.get("segment"), int):
            wanted["segment"].add(node["segment"])
        elif kind == "group" and node.get("group"):
            wanted["group"].add(node["group"])
        elif kind == "attribute" and node.get("field") in ("branch", "advisor"):
            value = node.get("value")
            wanted[node["field"]].update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    wanted = {k: {v for v in codes if v not in (None, "")} for k, codes in wanted.items()}
    names: dict = {}
    queries = {
        "tag": lambda c: Tag.objects.filter(code__in=c).values_list("code", "name"),
        "category": lambda c: TagCategory.objects.filter(code__in=c).values_list("code", "name"),
        "segment": lambda c: Segment.objects.filter(pk__in=c).values_list("pk", "name"),
        "group": lambda c: GroupChat.objects.filter(chat_id__in=c).values_list("chat_id", "name"),
        "branch": lambda c: Branch.objects.filter(code__in=c).values_list("code", "name"),
        "advisor": lambda c: [(u.employee_code, u.display_name or u.username)
                              for u in User.objects.filter(employee_code__in=c)],
    }
    for kind, codes in wanted.items():
        if codes:
            names.update({(kind, code): name for code, name in queries[kind](codes)})
    if tiers:
        names.update({("tier", code): label for code, label in tier_choices()})
    return names


def rule_summary(rule, *, depth: int = 0, names: dict | None = None) -> str:
    """A readable one-paragraph summary of a rule (the detail page's 规则): every code in words."""
    from django.utils.translation import gettext as _
    from django.utils.translation import pgettext

    from customers.models import EVENT_TYPE_LABELS, PRODUCT_TYPE_LABELS
    from groups.models import Purpose
    from tagging.models import TagSource

    labels = _labels()
    if not isinstance(rule, dict):
        return ""
    if names is None:
        names = summary_names(rule)
    comma = pgettext("punctuation", "、")

    def name(kind, code):
        return str(names.get((kind, code), code))

    def words(values, kind=None, choices=None):
        values = values if isinstance(values, list) else ([] if values in (None, "") else [values])
        return comma.join(name(kind, v) if kind else str((choices or {}).get(v, v)) for v in values)

    neg = _("非 ") if rule.get("not") else ""
    if is_group(rule):
        joiner = _(" 且 ") if rule.get("op") == "and" else _(" 或 ")
        parts = [rule_summary(child, depth=depth + 1, names=names) for child in rule.get("rules") or []]
        text = joiner.join(parts) or _("（空）")
        return _("%(not)s（%(text)s）") % {"not": neg, "text": text} if depth or neg else text
    kind = rule.get("type")
    op = labels["ops"].get(rule.get("op"), rule.get("op") or "")
    value = rule.get("value")
    value_text = comma.join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))
    between = rule.get("op") == "between" and isinstance(value, list) and len(value) == 2
    if kind == "attribute":
        field_code = rule.get("field")
        field = labels["fields"].get(field_code, field_code)
        if field_code in ("branch", "advisor"):
            value_text = words(value, field_code)
        elif attribute_choices(field_code):
            value_text = words(value, choices=dict(attribute_choices(field_code)))
        if between:
            body = _("%(field)s 介于 %(low)s 至 %(high)s") % {"field": field, "low": value[0], "high": value[1]}
        else:
            body = f"{field} {op}" + (f" {value_text}" if value_text else "")
    elif kind == "tag":
        if rule.get("tag"):
            body = _("%(op)s标签「%(tag)s」") % {"op": op, "tag": name("tag", rule["tag"])}
        else:
            body = _("%(op)s标签分类「%(category)s」中的标签") % {"op": op, "category": name("category", rule.get("category"))}
        if rule.get("source"):
            body += _("（来源：%(source)s）") % {"source": dict(TagSource.choices).get(rule["source"], rule["source"])}
        if rule.get("within_days"):
            body += _("（近 %(days)s 天打上）") % {"days": rule["within_days"]}
    elif kind == "tier":
        body = _("价值分层 %(op)s %(tiers)s") % {"op": op, "tiers": words(value, "tier")}
    elif kind == "trades":
        product = rule.get("product_type")
        body = _("近 %(days)s 天%(product)s交易%(measure)s %(op)s %(value)s") % {
            "days": rule.get("within_days"), "measure": labels["measures"].get(rule.get("measure"), ""),
            "product": _("%(type)s类") % {"type": PRODUCT_TYPE_LABELS.get(product, product)} if product else "",
            "op": op, "value": value_text}
    elif kind == "events":
        body = _("近 %(days)s 天「%(event)s」%(props)s次数 %(op)s %(value)s") % {
            "days": rule.get("within_days"), "event": EVENT_TYPE_LABELS.get(rule.get("event_type"), rule.get("event_type")),
            "props": f"（{properties_text(rule.get('properties'))}）" if rule.get("properties") else "",
            "op": op, "value": value_text}
    elif kind == "segment":
        segment = rule.get("segment")
        if ("segment", segment) in names:
            body = _("%(op)s客群「%(name)s」") % {"op": op, "name": name("segment", segment)}
        else:
            body = _("%(op)s客群 #%(id)s") % {"op": op, "id": segment}
    elif kind == "group":
        if rule.get("group"):
            what = _("「%(name)s」") % {"name": name("group", rule["group"])}
        elif rule.get("purpose"):
            what = _("用途为「%(purpose)s」的群") % {"purpose": dict(Purpose.choices).get(rule["purpose"], rule["purpose"])}
        else:
            what = _("任一群")
        body = _("%(op)s（社群 %(what)s）") % {"op": op, "what": what}
    elif kind == "custom":
        from customers.custom_fields import definition_get

        definition = definition_get(rule.get("field"))
        label = definition.label if definition else rule.get("field")
        if between:
            body = _("自定义字段「%(label)s」 介于 %(low)s 至 %(high)s") % {"label": label, "low": value[0], "high": value[1]}
        else:
            body = _("自定义字段「%(label)s」 %(op)s") % {"label": label, "op": op} + (f" {value_text}" if value_text else "")
    elif kind == "tier_change":
        body = _("近 %(days)s 天分层%(direction)s%(to)s") % {
            "days": rule.get("within_days"),
            "direction": labels["directions"].get(rule.get("direction"), rule.get("direction")),
            "to": _("至 %(tiers)s") % {"tiers": words(rule["to"], "tier")} if rule.get("to") else ""}
    else:
        body = f"{_type_label(kind, labels)} {op} {value_text}".strip()
    return f"{neg}{body}"
