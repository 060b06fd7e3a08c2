"""The rule language shared by segments and rule tags, and its single compiler to SQL.

A rule is a JSON tree::

    {"op": "and" | "or", "not": false, "rules": [node, ...]}          a group
    {"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}
    {"type": "tag", "op": "has" | "has_not", "tag": "margin_intent", "within_days": 30}
    {"type": "tier", "op": "in" | "not_in", "value": ["important_value"]}
    {"type": "trades", "measure": "count" | "amount", "op": "gte", "value": 3,
     "within_days": 90, "product_type": "fund"}
    {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7,
     "properties": {"product_type": "fund"}}
    {"type": "segment", "op": "in" | "not_in", "segment": 12}
    {"type": "group", "op": "member" | "not_member", "group": "<chat_id>", "purpose": "fund"}
    {"type": "tier_change", "direction": "down" | "up" | "any", "to": ["general_retain"], "within_days": 30}
    {"type": "custom", "field": "invest_pref", "op": "in", "value": ["稳健", "平衡"]}

Any node may carry ``"not": true``; a node carries no other keys than those of its type (a typo such as
``withinDays`` is refused, not ignored). ``rule_validate`` reports the JSON path of the first bad node;
``rule_compile`` turns a valid tree into one Q over Customer (EXISTS / NOT EXISTS subqueries), so a
count, a preview or an ``INSERT … SELECT`` is one SQL statement.

A ``segment`` node joins the nested segment's STORED membership (segments_segmentmember), never its
rule, so nesting costs one indexed EXISTS whatever the nested rule is; the nested segment must be
rebuilt first for a change of its rule to show (segments.services rebuilds in dependency order).
A ``custom`` node is a condition on an admin-defined custom field (customers/custom_fields.py), by its code; the
operators depend on the field's type — text: eq ne in not_in contains; number and date (``"YYYY-MM-DD"``): eq ne gt
gte lt lte between; single choice: eq ne in not_in; multiple choice: has_any has_all; every type: is_set
is_not_set (no ``value``). A comparison holds only for customers that have a value (``ne``: a value, and a
different one), so ``not`` is the exact complement. It compiles to containment / key existence on
Customer.custom_fields (GIN) and, for ranges, to the cast value. A deactivated field still compiles (its values
are kept), so a saved segment does not break when a field is hidden.

The published JSON Schema of the whole tree is segments/rule_schema.py (RULE_JSON_SCHEMA).
"""

import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from core.errors import ApplicationError

MAX_DEPTH = 6
MAX_NODES = 200

ATTRIBUTE_FIELDS = {
    # field: (kind, ORM path)
    "risk_level": ("choice", "risk_level"),
    "gender": ("choice", "gender"),
    "region": ("text", "region"),
    "occupation": ("text", "occupation"),
    "branch": ("text", "branch__code"),
    "advisor": ("text", "advisor__employee_code"),
    "lifecycle_stage": ("choice", "lifecycle_stage"),
    "funnel_stage": ("choice", "funnel_stage"),
    "channel": ("text", "channel"),
    "utm_source": ("text", "utm_source"),
    "utm_medium": ("text", "utm_medium"),
    "utm_campaign": ("text", "utm_campaign"),
    "total_assets": ("number", "total_assets"),
    "age": ("age", "birth_date"),
    "opened_days_ago": ("days_ago", "opened_at"),
    "risk_assessment_current": ("bool", None),
    "is_wecom_contact": ("bool", None),
}
OPS = {
    "choice": {"eq", "ne", "in", "not_in"},
    "text": {"eq", "ne", "in", "not_in", "contains"},
    "number": {"eq", "ne", "gt", "gte", "lt", "lte", "between"},
    "age": {"gt", "gte", "lt", "lte", "between"},
    "days_ago": {"gt", "gte", "lt", "lte", "between"},
    "bool": {"is_true", "is_false"},
}
COUNT_OPS = {"eq", "ne", "gt", "gte", "lt", "lte"}


class RuleError(ApplicationError):
    def __init__(self, path: str, message: str):
        super().__init__("invalid_rule", f"{path}: {message}", [{"path": path, "message": message}])
        self.path = path


# Numbers are bounded when validated, so compiling never fails on a value (a year before 1, a date or
# decimal the database cannot hold): ages in years, "days ago" in days, anything else in yuan / count.
MAX_NUMBER = Decimal(10) ** 15  # fits Customer.total_assets (18 digits, 2 decimals)
BOUNDS = {"age": (0, 150), "days_ago": (0, 36500)}


def _number(value, path, bounds: tuple[int, int] | None = None):
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise RuleError(path, "应为数字") from None
    if not number.is_finite():
        raise RuleError(path, "应为数字")
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        raise RuleError(path, f"应在 {bounds[0]}–{bounds[1]} 之间")
    if abs(number) > MAX_NUMBER:
        raise RuleError(path, "数值太大（绝对值不能超过 10^15）")
    return number


def _has_nul(value) -> bool:
    """A NUL character anywhere in a value (PostgreSQL text cannot hold one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_has_nul(v) for v in value)


def _check_window(node, path, required=False):
    days = node.get("within_days")
    if days is None:
        if required:
            raise RuleError(f"{path}.within_days", "缺少时间窗口（天）")
        return
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise RuleError(f"{path}.within_days", "应为 1–3650 的整数")


def rule_validate(rule, path: str = "$", depth: int = 0, counter: list | None = None) -> None:
    """Raise RuleError naming the path of the first invalid node."""
    counter = counter if counter is not None else [0]
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise RuleError(path, f"规则节点不能超过 {MAX_NODES} 个")
    if not isinstance(rule, dict):
        raise RuleError(path, "应为对象")
    if "not" in rule and not isinstance(rule["not"], bool):
        raise RuleError(f"{path}.not", "应为 true 或 false")
    if "rules" in rule or rule.get("op") in ("and", "or"):
        if depth >= MAX_DEPTH:
            raise RuleError(path, f"嵌套不能超过 {MAX_DEPTH} 层")
        if rule.get("op") not in ("and", "or"):
            raise RuleError(f"{path}.op", "组的 op 应为 and 或 or")
        rules = rule.get("rules")
        if not isinstance(rules, list) or not rules:
            raise RuleError(f"{path}.rules", "组至少要有一个条件")
        extra = set(rule) - {"op", "not", "rules"}
        if extra:
            raise RuleError(path, f"未知字段 {sorted(extra)}")
        for i, child in enumerate(rules):
            rule_validate(child, f"{path}.rules[{i}]", depth + 1, counter)
        return
    kind = rule.get("type")
    if not isinstance(kind, str):
        raise RuleError(f"{path}.type", f"缺少条件类型，可用：{sorted({*_VALIDATORS, *CONDITION_EXTENSIONS})}")
    nulls = [key for key, value in rule.items() if value is None and key != "value"]
    if nulls:  # the published schema has no nulls: an optional field is left out, not set to null
        raise RuleError(f"{path}.{nulls[0]}", "不能为 null：不需要时请省略该字段")
    nul = next((key for key, value in rule.items() if _has_nul(value)), None)
    if nul:
        raise RuleError(f"{path}.{nul}", "不能包含 NUL 字符")
    validator = _VALIDATORS.get(kind) or (CONDITION_EXTENSIONS[kind][0] if kind in CONDITION_EXTENSIONS else None)
    if validator is None:
        raise RuleError(f"{path}.type", f"未知条件类型 {kind!r}，可用：{sorted({*_VALIDATORS, *CONDITION_EXTENSIONS})}")
    allowed = CONDITION_KEYS.get(kind)
    if allowed is not None:
        extra = set(rule) - allowed - {"type", "not"}
        if extra:
            raise RuleError(f"{path}.{sorted(extra)[0]}", f"条件类型 {kind} 没有字段 {sorted(extra)[0]!r}")
    validator(rule, path)


def rule_segment_refs(rule) -> list[tuple[str, int]]:
    """(JSON path of the node, segment id) for every ``segment`` node of a (valid) tree."""
    found = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if isinstance(node.get("rules"), list):
            for i, child in enumerate(node["rules"]):
                walk(child, f"{path}.rules[{i}]")
        elif node.get("type") == "segment" and isinstance(node.get("segment"), int):
            found.append((path, node["segment"]))

    walk(rule, "$")
    return found


def _validate_attribute(node, path):
    field = node.get("field")
    if not isinstance(field, str) or field not in ATTRIBUTE_FIELDS:
        raise RuleError(f"{path}.field", f"未知字段 {field!r}")
    kind, _ = ATTRIBUTE_FIELDS[field]
    op = node.get("op")
    if not isinstance(op, str) or op not in OPS[kind]:
        raise RuleError(f"{path}.op", f"字段 {field} 不支持运算 {op!r}，可用：{sorted(OPS[kind])}")
    value = node.get("value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RuleError(f"{path}.value", "应为非空的字符串列表")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f"{path}.value", "应为 [下限, 上限]")
        _number(value[0], f"{path}.value[0]", BOUNDS.get(kind)), _number(value[1], f"{path}.value[1]", BOUNDS.get(kind))
    elif kind in ("number", "age", "days_ago"):
        _number(value, f"{path}.value", BOUNDS.get(kind))
    elif kind in ("choice", "text") and not isinstance(value, str):
        raise RuleError(f"{path}.value", "应为字符串")
    if kind == "choice":  # a value no customer can have matches nobody, silently: say so instead
        allowed = _choice_values(ATTRIBUTE_FIELDS[field][1])
        unknown = [v for v in (value if isinstance(value, list) else [value]) if v not in allowed]
        if unknown:
            raise RuleError(f"{path}.value", f"未知取值 {', '.join(map(str, unknown))}，可用：{', '.join(sorted(allowed))}")


def _choice_values(model_field: str) -> set[str]:
    from customers.models import Customer

    return {str(code) for code, _label in Customer._meta.get_field(model_field).choices or []}


def _validate_tag(node, path):
    if node.get("op") not in ("has", "has_not"):
        raise RuleError(f"{path}.op", "应为 has 或 has_not")
    if not node.get("tag") and not node.get("category"):
        raise RuleError(f"{path}.tag", "请指定标签（tag）或分类（category）")
    for key in ("tag", "category"):
        if node.get(key) is not None and (not isinstance(node[key], str) or not node[key]):
            raise RuleError(f"{path}.{key}", "应为非空字符串")
    if node.get("source") is not None and not isinstance(node["source"], str):
        raise RuleError(f"{path}.source", "应为字符串")
    _check_window(node, path)


def _validate_tier(node, path):
    if node.get("op") not in ("in", "not_in"):
        raise RuleError(f"{path}.op", "应为 in 或 not_in")
    value = node.get("value")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{path}.value", "应为非空的分层代码列表")


def _validate_count(node, path, measure_required):
    if measure_required and node.get("measure") not in ("count", "amount"):
        raise RuleError(f"{path}.measure", "应为 count 或 amount")
    if not isinstance(node.get("op"), str) or node["op"] not in COUNT_OPS:
        raise RuleError(f"{path}.op", f"应为 {sorted(COUNT_OPS)} 之一")
    value = _number(node.get("value"), f"{path}.value")
    if value < 0:
        raise RuleError(f"{path}.value", "不能为负数")
    _check_window(node, path, required=True)


def _validate_trades(node, path):
    _validate_count(node, path, measure_required=True)
    if node.get("product_type") is not None and not isinstance(node["product_type"], str):
        raise RuleError(f"{path}.product_type", "应为字符串")


def _validate_events(node, path):
    if not isinstance(node.get("event_type"), str) or not node["event_type"]:
        raise RuleError(f"{path}.event_type", "请指定事件类型")
    _validate_count(node, path, measure_required=False)
    props = node.get("properties")
    if props is not None and (not isinstance(props, dict) or
                              not all(isinstance(v, str | int | float | bool) for v in props.values())):
        raise RuleError(f"{path}.properties", "应为 {属性: 值} 的对象")


def _validate_segment(node, path):
    from segments.models import Segment

    if node.get("op") not in ("in", "not_in"):
        raise RuleError(f"{path}.op", "应为 in 或 not_in")
    segment_id = node.get("segment")
    if not isinstance(segment_id, int) or isinstance(segment_id, bool) or segment_id < 1:
        raise RuleError(f"{path}.segment", "应为客群编号（正整数）")
    segment = Segment.objects.filter(pk=segment_id).values("archived").first()
    if segment is None:
        raise RuleError(f"{path}.segment", f"客群 {segment_id} 不存在")
    if segment["archived"]:
        raise RuleError(f"{path}.segment", f"客群 {segment_id} 已归档，不能再被引用")


def _validate_group(node, path):
    from groups.models import Purpose

    if node.get("op") not in ("member", "not_member"):
        raise RuleError(f"{path}.op", "应为 member 或 not_member")
    group = node.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise RuleError(f"{path}.group", "应为群 chat_id（字符串）")
    purpose = node.get("purpose")
    if purpose is not None and purpose not in Purpose.values:
        raise RuleError(f"{path}.purpose", f"应为 {sorted(Purpose.values)} 之一")


def _validate_tier_change(node, path):
    if node.get("direction") not in ("down", "up", "any"):
        raise RuleError(f"{path}.direction", "应为 down、up 或 any")
    to = node.get("to")
    if to is not None and (not isinstance(to, list) or not to or not all(isinstance(v, str) and v for v in to)):
        raise RuleError(f"{path}.to", "应为非空的分层代码列表")
    _check_window(node, path, required=True)


def _custom_date(value, path) -> str:
    from customers.custom_fields import CustomValueInvalid, date_parse

    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        raise RuleError(path, "应为日期 YYYY-MM-DD")
    try:
        date_parse(value)
    except CustomValueInvalid as exc:
        raise RuleError(path, exc.message) from None
    return value


def _custom_scalar(field_type: str, value, path):
    if field_type == "number":
        if isinstance(value, bool):
            raise RuleError(path, "应为数字")
        return _number(value, path)
    if field_type == "date":
        return _custom_date(value, path)
    if not isinstance(value, str):
        raise RuleError(path, "应为字符串")
    if len(value) > 500:
        raise RuleError(path, "最多 500 个字符")
    return value


def _validate_custom(node, path):
    from customers import custom_fields as cf

    code = node.get("field")
    definition = cf.definition_get(code) if isinstance(code, str) else None
    if definition is None:
        raise RuleError(f"{path}.field", f"未知的自定义字段 {code!r}")
    ops = cf.OPS[definition.type]
    op = node.get("op")
    if not isinstance(op, str) or op not in ops:
        raise RuleError(f"{path}.op", f"自定义字段 {code}（{definition.get_type_display()}）不支持运算 {op!r}，可用：{list(ops)}")
    value = node.get("value")
    if op in cf.NO_VALUE_OPS:
        if value is not None:
            raise RuleError(f"{path}.value", f"运算 {op} 不需要值，请省略 value")
    elif op in cf.LIST_OPS:
        if not isinstance(value, list) or not value:
            raise RuleError(f"{path}.value", "应为非空的列表")
        if len(value) > cf.MAX_LIST_VALUES:
            raise RuleError(f"{path}.value", f"最多 {cf.MAX_LIST_VALUES} 个值")
        for i, item in enumerate(value):
            _custom_scalar(definition.type if definition.type != "multi_choice" else "choice", item, f"{path}.value[{i}]")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f"{path}.value", "应为 [下限, 上限]")
        for i, item in enumerate(value):
            _custom_scalar(definition.type, item, f"{path}.value[{i}]")
    else:
        _custom_scalar(definition.type, value, f"{path}.value")


_VALIDATORS = {"attribute": _validate_attribute, "tag": _validate_tag, "tier": _validate_tier,
               "trades": _validate_trades, "events": _validate_events, "segment": _validate_segment,
               "group": _validate_group, "tier_change": _validate_tier_change, "custom": _validate_custom}

# the keys each condition type may carry besides "type" and "not"
CONDITION_KEYS = {
    "attribute": {"field", "op", "value"},
    "tag": {"op", "tag", "category", "source", "within_days"},
    "tier": {"op", "value"},
    "trades": {"measure", "op", "value", "within_days", "product_type"},
    "events": {"event_type", "op", "value", "within_days", "properties"},
    "segment": {"op", "segment"},
    "group": {"op", "group", "purpose"},
    "tier_change": {"direction", "to", "within_days"},
    "custom": {"field", "op", "value"},
}

# Later areas add condition types: CONDITION_EXTENSIONS[type] = (validator, compiler, label shown in the builder)
CONDITION_EXTENSIONS: dict = {}


# --- compiler --------------------------------------------------------------------------------

def _cmp(lookup_base: str, op: str, value) -> Q:
    return {
        "eq": Q(**{lookup_base: value}),
        "ne": ~Q(**{lookup_base: value}),
        "gt": Q(**{f"{lookup_base}__gt": value}),
        "gte": Q(**{f"{lookup_base}__gte": value}),
        "lt": Q(**{f"{lookup_base}__lt": value}),
        "lte": Q(**{f"{lookup_base}__lte": value}),
    }[op]


def _years_ago(years: Decimal, today: date) -> date:
    whole = int(years)
    try:
        return today.replace(year=today.year - whole)
    except ValueError:  # 29 February
        return today.replace(year=today.year - whole, day=28)


def _compile_attribute(node, now) -> Q:
    field, op, value = node["field"], node["op"], node.get("value")
    kind, path = ATTRIBUTE_FIELDS[field]
    today = timezone.localdate(now)
    if field == "risk_assessment_current":
        from customers.selectors import risk_expiry_cutoff

        current = Q(risk_assessed_at__gt=risk_expiry_cutoff(today))
        return current if op == "is_true" else ~current
    if field == "is_wecom_contact":
        q = Q(wecom_external_userid__isnull=False)
        return q if op == "is_true" else ~q
    if op == "in":
        return Q(**{f"{path}__in": value})
    if op == "not_in":
        return ~Q(**{f"{path}__in": value})
    if op == "contains":
        return Q(**{f"{path}__contains": value})
    if kind == "age":
        # age > n  ⇔  born before today minus (n+1) years; expressed on birth_date so an index can help
        if op == "between":
            low, high = (int(_number(v, "")) for v in value)
            return Q(birth_date__lte=_years_ago(Decimal(low), today), birth_date__gt=_years_ago(Decimal(high + 1), today))
        n = int(_number(value, ""))
        return {"gte": Q(birth_date__lte=_years_ago(Decimal(n), today)),
                "gt": Q(birth_date__lte=_years_ago(Decimal(n + 1), today)),
                "lt": Q(birth_date__gt=_years_ago(Decimal(n), today)),
                "lte": Q(birth_date__gt=_years_ago(Decimal(n + 1), today))}[op]
    if kind == "days_ago":
        if op == "between":
            low, high = (int(_number(v, "")) for v in value)
            return Q(**{f"{path}__lte": today - timedelta(days=low), f"{path}__gte": today - timedelta(days=high)})
        n = int(_number(value, ""))
        return {"gte": Q(**{f"{path}__lte": today - timedelta(days=n)}),
                "gt": Q(**{f"{path}__lt": today - timedelta(days=n)}),
                "lte": Q(**{f"{path}__gte": today - timedelta(days=n)}),
                "lt": Q(**{f"{path}__gt": today - timedelta(days=n)})}[op]
    if op == "between":
        return Q(**{f"{path}__gte": _number(value[0], ""), f"{path}__lte": _number(value[1], "")})
    if kind == "number":
        value = _number(value, "")
    return _cmp(path, op, value)


def _compile_tag(node, now, negate=False) -> Q:
    from tagging.models import CustomerTag

    tags = CustomerTag.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if node.get("tag"):
        tags = tags.filter(tag__code=node["tag"])
    if node.get("category"):
        tags = tags.filter(tag__category__code=node["category"])
    if node.get("source"):
        tags = tags.filter(source=node["source"])
    if node.get("within_days"):
        tags = tags.filter(created_at__gte=now - timedelta(days=node["within_days"]))
    return _customers_in(tags, negate=(node["op"] == "has") == negate)


def _compile_tier(node, now, negate=False) -> Q:
    from tagging.models import CustomerTier

    rows = CustomerTier.objects.filter(code__in=node["value"])
    return _customers_in(rows, negate=(node["op"] == "in") == negate)


def _customers_in(rows, *, negate: bool) -> Q:
    """Customers with a row in ``rows`` (a queryset with ``customer_id``): an uncorrelated IN when positive (a
    semi-join under AND, a hashed lookup under OR); NOT EXISTS when negated — an anti-join, because PostgreSQL
    runs NOT IN row by row once its hash outgrows work_mem."""
    if negate:
        return ~Q(Exists(rows.filter(customer_id=OuterRef("pk"))))
    return Q(pk__in=rows.values("customer_id"))


_HOLDS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
          "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _count_condition(rows, op: str, value: Decimal, aggregate, negate: bool = False) -> Q:
    """count/sum of each customer's ``rows`` compared with value, as ONE uncorrelated aggregate over the
    window (``customer_id IN (… GROUP BY customer_id HAVING …)``), not a subquery per customer. When 0
    satisfies the comparison (e.g. "fewer than 3"), customers without rows match too, so the complement
    is taken: NOT IN (those whose total does not satisfy it)."""
    if aggregate is None and (op, value) in (("gte", 1), ("gt", 0)):
        return _customers_in(rows, negate=negate)
    if aggregate is None and (op, value) in (("eq", 0), ("lt", 1), ("lte", 0)):
        return _customers_in(rows, negate=not negate)
    totals = rows.order_by().values("customer_id").annotate(v=aggregate or Count("*"))  # count(*): index-only
    satisfied = _cmp("v", op, value)
    if _HOLDS[op](Decimal(0), value):
        return _customers_in(totals.filter(~satisfied), negate=not negate)
    return _customers_in(totals.filter(satisfied), negate=negate)


def _compile_trades(node, now, negate=False) -> Q:
    from customers.models import Product, Trade

    rows = Trade.objects.filter(traded_at__gte=now - timedelta(days=node["within_days"]), traded_at__lte=now)
    if node.get("product_type"):
        # the type's product ids as literals (products are few), not a join: the window is then read from the
        # covering index (product, traded_at, customer) INCLUDE (amount) as one range per product, index-only,
        # and the planner estimates the rows from the product_id statistics
        # (no product of the type: keep the join, which matches nothing, since an empty IN has no SQL)
        product_ids = list(Product.objects.filter(type=node["product_type"]).order_by("pk").values_list("pk", flat=True))
        rows = rows.filter(product_id__in=product_ids) if product_ids else rows.filter(product__type=node["product_type"])
    value = _number(node["value"], "")
    aggregate = Sum("amount") if node["measure"] == "amount" else None
    return _count_condition(rows, node["op"], value, aggregate, negate)


def _compile_events(node, now, negate=False) -> Q:
    from customers.models import BehaviourEvent

    rows = BehaviourEvent.objects.filter(type=node["event_type"],
                                         occurred_at__gte=now - timedelta(days=node["within_days"]),
                                         occurred_at__lte=now)
    if node.get("properties"):
        rows = rows.filter(properties__contains=node["properties"])
    return _count_condition(rows, node["op"], _number(node["value"], ""), None, negate)


def _compile_segment(node, now) -> Q:
    from segments.models import SegmentMember

    exists = Exists(SegmentMember.objects.filter(segment_id=node["segment"], customer_id=OuterRef("pk")))
    return Q(exists) if node["op"] == "in" else ~Q(exists)


def _compile_group(node, now) -> Q:
    from groups.models import GroupMember

    rows = GroupMember.objects.filter(customer_id=OuterRef("pk"), left_at__isnull=True)
    if node.get("group"):
        rows = rows.filter(group__chat_id=node["group"])
    if node.get("purpose"):
        rows = rows.filter(group__purpose=node["purpose"])
    exists = Exists(rows)
    return Q(exists) if node["op"] == "member" else ~Q(exists)


def _compile_tier_change(node, now) -> Q:
    """A tier change within the window; down/up compare TierDefinition.rank of the active scheme
    (smaller rank = higher value, so "down" is a larger rank after the change)."""
    from tagging.models import CustomerTierHistory, TierDefinition

    rows = CustomerTierHistory.objects.filter(customer_id=OuterRef("pk"),
                                              at__gte=now - timedelta(days=node["within_days"]), at__lte=now)
    if node.get("to"):
        rows = rows.filter(to_code__in=node["to"])
    if node["direction"] != "any":
        def rank(column):
            return Subquery(TierDefinition.objects.filter(scheme__active=True, code=OuterRef(column)).values("rank")[:1])

        rows = rows.annotate(from_rank=rank("from_code"), to_rank=rank("to_code"))
        rows = rows.filter(to_rank__gt=F("from_rank")) if node["direction"] == "down" else rows.filter(
            to_rank__lt=F("from_rank"))
    return Q(Exists(rows))


def _compile_custom(node, now) -> Q:
    from customers.custom_fields import custom_field_q, definition_get

    definition = definition_get(node["field"])
    return custom_field_q(code=definition.code, field_type=definition.type, op=node["op"], value=node.get("value"))


_COMPILERS = {"attribute": _compile_attribute, "tag": _compile_tag, "tier": _compile_tier,
              "trades": _compile_trades, "events": _compile_events, "segment": _compile_segment,
              "group": _compile_group, "tier_change": _compile_tier_change, "custom": _compile_custom}


# compilers that take ``negate`` and choose their own SQL for it (IN vs NOT EXISTS); the others are negated with ~
_NEGATION_AWARE = {"tag", "tier", "trades", "events"}


def rule_compile(rule: dict, *, now=None, negate: bool = False) -> Q:
    """A Q over Customer for a VALID rule (call rule_validate first). ``now`` fixes every time window.
    NOT is pushed down to the conditions (De Morgan), so each can pick the SQL that stays fast negated."""
    now = now or timezone.now()
    negate = negate != bool(rule.get("not"))
    if "rules" in rule:
        parts = [rule_compile(child, now=now, negate=negate) for child in rule["rules"]]
        conjunction = (rule["op"] == "and") != negate
        q = parts[0]
        for part in parts[1:]:
            q = (q & part) if conjunction else (q | part)
        return q
    if rule["type"] in _NEGATION_AWARE:
        return _COMPILERS[rule["type"]](rule, now, negate)
    compiler = _COMPILERS.get(rule["type"]) or CONDITION_EXTENSIONS[rule["type"]][1]
    q = compiler(rule, now)
    return ~q if negate else q


def rule_sql(rule: dict, *, now) -> tuple[str, tuple]:
    """``SELECT id FROM customers_customer WHERE <rule>`` and its parameters, for a set-based ``INSERT … SELECT``
    (a VALID rule; firm-wide: no scope)."""
    from customers.models import Customer

    return Customer.objects.filter(rule_compile(rule, now=now)).order_by().values("id").query.sql_with_params()


def rule_queryset(rule: dict, *, principal=None, now=None):
    """Customers matching ``rule`` (validated here), within ``principal``'s scope when given."""
    from customers.models import Customer

    rule_validate(rule)
    qs = Customer.objects.all() if principal is None else Customer.objects.visible_to(principal)
    return qs.filter(rule_compile(rule, now=now))
