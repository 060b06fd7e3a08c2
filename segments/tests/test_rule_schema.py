"""The published JSON Schema agrees with rule_validate: examples validate against both, and every tree
the schema refuses is refused by the validator too (the validator also checks what JSON Schema cannot)."""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from segments.models import Segment
from segments.rule_schema import RULE_JSON_SCHEMA
from segments.rules import RuleError, rule_validate
from segments.tests.test_rules_property import SEGMENT_IDS, custom_fields_define
from segments.tests.test_rules_property import rules as rule_trees

pytestmark = pytest.mark.django_db
SCHEMA = Draft202012Validator(RULE_JSON_SCHEMA)


def one(node):
    return {"op": "and", "rules": [node]}


EXAMPLES = [
    # segments/rules.py docstring and docs/readme/segments-rules.md
    {"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]},
    {"type": "tag", "op": "has", "tag": "margin_intent", "within_days": 30},
    {"type": "tag", "op": "has_not", "category": "opportunity", "source": "conversation"},
    {"type": "tier", "op": "in", "value": ["important_value"]},
    {"type": "trades", "measure": "count", "op": "gte", "value": 3, "within_days": 90, "product_type": "fund"},
    {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7,
     "properties": {"product_type": "fund"}},
    {"type": "segment", "op": "in", "segment": SEGMENT_IDS[0]},
    {"type": "group", "op": "member", "group": "wr-fund", "purpose": "fund"},
    {"type": "group", "op": "not_member"},
    {"type": "tier_change", "direction": "down", "to": ["general_retain"], "within_days": 30},
    {"type": "tier_change", "direction": "any", "within_days": 7, "not": True},
    {"type": "attribute", "field": "total_assets", "op": "between", "value": [100000, 500000]},
    {"type": "attribute", "field": "age", "op": "gte", "value": 60},
    {"type": "attribute", "field": "opened_days_ago", "op": "lte", "value": 30},
    {"type": "attribute", "field": "region", "op": "contains", "value": "北京"},
    {"type": "attribute", "field": "is_wecom_contact", "op": "is_true"},
    {"type": "attribute", "field": "risk_assessment_current", "op": "is_false"},
    {"type": "custom", "field": "pref", "op": "in", "value": ["稳健", "平衡"]},
    {"type": "custom", "field": "score", "op": "between", "value": [10, 50]},
    {"type": "custom", "field": "since", "op": "gte", "value": "2025-01-01"},
    {"type": "custom", "field": "hobbies", "op": "has_all", "value": ["基金"]},
    {"type": "custom", "field": "memo", "op": "is_not_set"},
    # tests/test_rules.py
    {"op": "and", "rules": [
        {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7},
        {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365, "product_type": "fund"}]},
    {"op": "or", "not": True, "rules": [
        {"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000, "not": False},
        {"type": "trades", "measure": "amount", "op": "gt", "value": 50000, "within_days": 30}]},
]

SCHEMA_INVALID = [
    [],
    {"op": "and", "rules": []},
    {"op": "xor", "rules": [{"type": "tier", "op": "in", "value": ["a"]}]},
    {"op": "and", "rules": [{"type": "tier", "op": "in", "value": ["a"]}], "label": "x"},
    one({"type": "attribute", "field": "nope", "op": "eq", "value": "x"}),
    one({"type": "attribute", "field": "total_assets", "op": "in", "value": ["1"]}),
    one({"type": "attribute", "field": "risk_level", "op": "eq", "value": 3}),
    one({"type": "attribute", "field": "total_assets", "op": "between", "value": [1]}),
    one({"type": "events", "event_type": "x", "op": "gte", "value": 3}),
    one({"type": "trades", "measure": "count", "op": "gte", "value": "many", "within_days": 7}),
    one({"type": "trades", "measure": "count", "op": "gte", "value": -1, "within_days": 7}),
    one({"type": "trades", "measure": "count", "op": "gte", "value": 1, "within_days": 0}),
    one({"type": "tag", "op": "has"}),
    one({"type": "tag", "op": "has", "tag": "x", "withinDays": 3}),
    one({"type": "tag", "op": "has", "tag": "x", "not": "yes"}),
    one({"type": "segment", "op": "in", "segment": "1"}),
    one({"type": "segment", "op": "in", "segment": True}),
    one({"type": "group", "op": "member", "purpose": "party"}),
    one({"type": "tier_change", "direction": "down"}),
    one({"type": "tier_change", "direction": "down", "within_days": 3, "to": []}),
    one({"type": "unknown"}),
    one({"type": "custom", "field": "pref", "op": "in", "value": "稳健"}),
    one({"type": "custom", "field": "Pref", "op": "is_set"}),
    one({"type": "custom", "field": "pref", "op": "eq"}),
    one({"type": "custom", "field": "score", "op": "between", "value": [1]}),
    one({"op": "and"}),
    one("tier"),
]


@pytest.fixture
def nested_segments():
    custom_fields_define()  # the custom field conditions of the generated trees name these
    for pk in SEGMENT_IDS:
        Segment.objects.create(pk=pk, name=f"嵌套{pk}", rule=one({"type": "tier", "op": "in", "value": ["x"]}))


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(RULE_JSON_SCHEMA)
    assert RULE_JSON_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_satisfy_schema_and_validator(nested_segments, example):
    tree = example if "rules" in example else one(example)
    assert not list(SCHEMA.iter_errors(tree)), [e.message for e in SCHEMA.iter_errors(tree)]
    rule_validate(tree)


@pytest.mark.parametrize("tree", SCHEMA_INVALID)
def test_what_the_schema_refuses_the_validator_refuses(tree):
    assert list(SCHEMA.iter_errors(tree))
    with pytest.raises(RuleError):
        rule_validate(tree)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=rule_trees)
def test_generated_trees_satisfy_the_schema(nested_segments, tree):
    tree = tree if "rules" in tree else one(tree)
    assert not list(SCHEMA.iter_errors(tree))
    rule_validate(tree)


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3), st.just([]), st.just({}),
                 st.just(["x"]), st.sampled_from(["in", "and", "has", "member", "down", "eq", "count"]))


def _mutate(tree, data):
    """Replace or drop one value somewhere in the tree, or add an unknown key."""
    nodes = []

    def walk(node):
        if isinstance(node, dict):
            nodes.append(node)
            for child in node.get("rules", []) if isinstance(node.get("rules"), list) else []:
                walk(child)

    walk(tree)
    node = data.draw(st.sampled_from(nodes))
    how = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if how == "add" or not node:
        node[data.draw(st.sampled_from(["extra", "within", "value", "tag", "to", "segment"]))] = data.draw(JUNK)
    else:
        key = data.draw(st.sampled_from(sorted(node)))
        if how == "drop":
            del node[key]
        else:
            node[key] = data.draw(JUNK)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=rule_trees, data=st.data())
def test_schema_never_lets_through_what_the_validator_refuses_and_vice_versa(nested_segments, tree, data):
    """On random damage: schema-invalid ⇒ validator refuses (with a RuleError, never a crash)."""
    tree = copy.deepcopy(tree if "rules" in tree else one(tree))
    _mutate(tree, data)
    schema_ok = not list(SCHEMA.iter_errors(tree))
    try:
        rule_validate(tree)
        validator_ok = True
    except RuleError:
        validator_ok = False
    if not schema_ok:
        assert not validator_ok
