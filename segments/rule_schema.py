"""The published JSON Schema (draft 2020-12) of a segment rule tree (served at /segments/rule-schema.json).

Built from the same tables as the validator (segments/rules.py), so the two cannot drift apart on
fields and operators. The schema is never stricter than ``rule_validate``: every tree the schema refuses
is refused by the validator too (tested); the validator additionally checks what a schema cannot —
that nested segments exist and are not archived, the depth limit, the node count.
"""

from customers.custom_fields import LIST_OPS as CUSTOM_LIST_OPS
from customers.custom_fields import NO_VALUE_OPS as CUSTOM_NO_VALUE_OPS
from customers.custom_fields import OPS as CUSTOM_OPS
from customers.models import CUSTOM_FIELD_CODE_RE
from groups.models import Purpose
from segments.rules import ATTRIBUTE_FIELDS, CONDITION_KEYS, COUNT_OPS, MAX_DEPTH, MAX_NODES, OPS

NUMBER = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}]}
NON_NEGATIVE = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}]}
WINDOW = {"type": "integer", "minimum": 1, "maximum": 3650, "description": "时间窗口（天）：从现在往前数 N 天"}
STRINGS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
CODES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
NOT = {"type": "boolean", "description": "true 表示取反"}


def _closed(type_: str, properties: dict, required: list[str], **extra) -> dict:
    assert set(properties) <= CONDITION_KEYS[type_] | {"type", "not"}
    return {"type": "object", "properties": {"type": {"const": type_}, "not": NOT, **properties},
            "required": ["type", *required], "additionalProperties": False, **extra}


def _attribute_variants() -> list[dict]:
    by_kind: dict[str, list[str]] = {}
    for field, (kind, _) in ATTRIBUTE_FIELDS.items():
        by_kind.setdefault(kind, []).append(field)
    variants = []
    for kind, fields in by_kind.items():
        ops = OPS[kind]
        groups = []
        if kind in ("choice", "text"):
            groups.append((ops & {"in", "not_in"}, STRINGS))
            groups.append((ops - {"in", "not_in"}, {"type": "string"}))
        elif kind == "bool":
            groups.append((ops, None))
        else:
            groups.append((ops - {"between"}, NUMBER))
            groups.append(({"between"}, {"type": "array", "prefixItems": [NUMBER, NUMBER], "minItems": 2,
                                         "maxItems": 2}))
        for op_set, value in groups:
            properties = {"field": {"enum": sorted(fields)}, "op": {"enum": sorted(op_set)}}
            required = ["field", "op"]
            if value is not None:
                properties["value"] = value
                required.append("value")
            else:
                properties["value"] = {}
            variants.append(_closed("attribute", properties, required))
    return variants


def _count(type_: str, extra: dict, required: list[str]) -> dict:
    return _closed(type_, {"op": {"enum": sorted(COUNT_OPS)}, "value": NON_NEGATIVE, "within_days": WINDOW, **extra},
                   ["op", "value", "within_days", *required])


def _custom_variants() -> list[dict]:
    """One variant per shape of value; which operators a field takes depends on its type, which only the validator
    knows (the schema stays no stricter than it)."""
    ops = {op for type_ops in CUSTOM_OPS.values() for op in type_ops}
    field = {"type": "string", "pattern": CUSTOM_FIELD_CODE_RE, "description": "自定义字段代码（GET /api/v1/custom-fields/）"}
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    shapes = [
        (CUSTOM_NO_VALUE_OPS, None),
        (CUSTOM_LIST_OPS, {"type": "array", "items": scalar, "minItems": 1}),
        ({"between"}, {"type": "array", "prefixItems": [scalar, scalar], "minItems": 2, "maxItems": 2}),
        (ops - CUSTOM_NO_VALUE_OPS - CUSTOM_LIST_OPS - {"between"}, scalar),
    ]
    variants = []
    for op_set, value in shapes:
        properties = {"field": field, "op": {"enum": sorted(op_set)}, "value": value if value is not None else {}}
        variants.append(_closed("custom", properties, ["field", "op"] + (["value"] if value is not None else [])))
    return variants


CONDITIONS = {
    "attribute": {"oneOf": _attribute_variants(),
                  "description": "客户属性：" + "、".join(ATTRIBUTE_FIELDS)},
    "tag": _closed("tag", {
        "op": {"enum": ["has", "has_not"]},
        "tag": {"type": "string", "minLength": 1, "description": "标签代码"},
        "category": {"type": "string", "minLength": 1, "description": "标签分类代码（任一该分类的标签）"},
        "source": {"type": "string", "description": "打标来源：manual/rule/conversation/api/wecom"},
        "within_days": WINDOW,
    }, ["op"], anyOf=[{"required": ["tag"]}, {"required": ["category"]}]),
    "tier": _closed("tier", {"op": {"enum": ["in", "not_in"]}, "value": STRINGS}, ["op", "value"]),
    "tier_change": _closed("tier_change", {
        "direction": {"enum": ["down", "up", "any"], "description": "down：价值下降（rank 变大）；up：上升；any：任何变化"},
        "to": CODES,
        "within_days": WINDOW,
    }, ["direction", "within_days"]),
    "trades": _count("trades", {"measure": {"enum": ["count", "amount"]}, "product_type": {"type": "string"}},
                     ["measure"]),
    "events": _count("events", {
        "event_type": {"type": "string", "minLength": 1},
        "properties": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    }, ["event_type"]),
    "group": _closed("group", {
        "op": {"enum": ["member", "not_member"]},
        "group": {"type": "string", "minLength": 1, "description": "群 chat_id；省略表示任一群"},
        "purpose": {"enum": list(Purpose.values), "description": "群用途"},
    }, ["op"]),
    "custom": {"oneOf": _custom_variants(),
               "description": "自定义字段：text 支持 eq ne in not_in contains；number、date（YYYY-MM-DD）支持 eq ne gt gte lt "
                              "lte between；choice 支持 eq ne in not_in；multi_choice 支持 has_any has_all；均支持 is_set "
                              "is_not_set（无 value）。比较只对有值的客户成立"},
    "segment": _closed("segment", {
        "op": {"enum": ["in", "not_in"]},
        "segment": {"type": "integer", "minimum": 1, "description": "被引用客群的编号（使用其已保存的成员）"},
    }, ["op", "segment"]),
}

assert "and_or" not in CONDITIONS and "node" not in CONDITIONS

RULE_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "/segments/rule-schema.json",
    "title": "客群规则",
    "description": (f"AND/OR/NOT 条件树；最多嵌套 {MAX_DEPTH} 层、{MAX_NODES} 个节点。"
                    "条件类型：" + "、".join(CONDITIONS)),
    "$ref": "#/$defs/node",
    "$defs": {
        "node": {"oneOf": [{"$ref": "#/$defs/and_or"}, *({"$ref": f"#/$defs/{name}"} for name in CONDITIONS)]},
        "and_or": {
            "type": "object",
            "properties": {"op": {"enum": ["and", "or"]}, "not": NOT,
                           "rules": {"type": "array", "minItems": 1, "maxItems": MAX_NODES,
                                     "items": {"$ref": "#/$defs/node"}}},
            "required": ["op", "rules"],
            "additionalProperties": False,
            "description": "条件组：op 为 and（全部满足）或 or（任一满足），not 为 true 时取反",
        },
        **CONDITIONS,
    },
}
