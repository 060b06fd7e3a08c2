"""The SQL compiler agrees with an independent Python evaluation of the same rule on generated data."""

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.models import BehaviourEvent, CustomFieldDefinition
from customers.tests.factories import CustomerFactory, ProductFactory, TradeFactory
from groups.models import GroupChat, GroupMember
from segments.models import Segment, SegmentMember
from segments.rules import rule_queryset
from tagging.models import CustomerTag, CustomerTierHistory, Tag, TierDefinition, TierRun, TierScheme

pytestmark = pytest.mark.django_db

LEVELS = ["C1", "C2", "C3", "C4", "C5"]
TAGS = ["margin_intent", "idle_funds", "novice"]
EVENT_TYPES = ["news_read", "fund_page_view"]
PRODUCT_TYPES = ["fund", "stock"]
GROUPS = [("chat-fund", "fund"), ("chat-vip", "vip"), ("chat-fund-2", "fund")]
PURPOSES = ["fund", "vip", "new_client"]
TIER_CODES = ["important_value", "important_retain", "general_value", "general_retain", "no_trade"]
SEGMENT_IDS = [900001, 900002]
NOW = timezone.now()
# custom fields (customers/custom_fields.py): code → (type, options)
CUSTOM = {"pref": ("choice", ["稳健", "平衡", "进取"]), "hobbies": ("multi_choice", ["基金", "股票", "债券"]),
          "score": ("number", []), "since": ("date", []), "memo": ("text", [])}
SCORES = [0, 5, 12.5, 50, 100]
DAYS = ["2024-02-29", "2025-01-01", "2025-06-30", "2026-12-31"]
MEMOS = ["老客户", "新客户", "VIP 客户", "50%"]


def custom_fields_define():
    for code, (field_type, options) in CUSTOM.items():
        CustomFieldDefinition.objects.get_or_create(code=code, defaults={"label": code, "type": field_type,
                                                                         "options": options})


def _custom_values(rng) -> dict:
    """Random values of the custom fields, each field missing about a third of the time."""
    values = {}
    if rng.random() < 0.7:
        values["pref"] = rng.choice(CUSTOM["pref"][1] + ["已删除的选项"])  # a value no longer among the options
    hobbies = [o for o in CUSTOM["hobbies"][1] if rng.random() < 0.4]
    if hobbies:
        values["hobbies"] = hobbies
    if rng.random() < 0.7:
        values["score"] = rng.choice(SCORES)
    if rng.random() < 0.7:
        values["since"] = rng.choice(DAYS)
    if rng.random() < 0.7:
        values["memo"] = rng.choice(MEMOS)
    return values


@pytest.fixture
def world(advisor):
    """30 customers with random attributes, tags, trades and events; and the same facts in Python."""
    rng = random.Random(7)
    products = {t: ProductFactory(code=f"P-{t}", type=t) for t in PRODUCT_TYPES}
    tags = {code: Tag.objects.get(code=code) for code in TAGS}
    for pk in SEGMENT_IDS:
        Segment.objects.create(pk=pk, name=f"嵌套{pk}", rule={"op": "and", "rules": [
            {"type": "attribute", "field": "gender", "op": "eq", "value": "M"}]})
    chats = {chat_id: GroupChat.objects.create(chat_id=chat_id, name=chat_id, purpose=purpose, owner_userid="owner")
             for chat_id, purpose in GROUPS}
    scheme = TierScheme.objects.get(active=True)
    ranks = dict(TierDefinition.objects.filter(scheme=scheme).values_list("code", "rank"))
    run = TierRun.objects.create(scheme=scheme, as_of=NOW.date(), window_days=365, method="mean")
    custom_fields_define()
    facts = {"_ranks": ranks}
    for i in range(30):
        c = CustomerFactory(advisor=advisor, risk_level=rng.choice(LEVELS), gender=rng.choice("MFU"),
                            total_assets=Decimal(rng.choice([0, 5000, 50000, 200000, 1000000])),
                            custom_fields=_custom_values(rng))
        f = {"risk_level": c.risk_level, "gender": c.gender, "total_assets": c.total_assets, "tags": set(),
             "trades": [], "events": [], "segments": set(), "groups": set(), "tier_changes": [],
             "custom": c.custom_fields}
        for pk in SEGMENT_IDS:  # stored membership, deliberately NOT what the nested rule says
            if rng.random() < 0.5:
                SegmentMember.objects.create(segment_id=pk, customer=c)
                f["segments"].add(pk)
        for k, (chat_id, purpose) in enumerate(GROUPS):
            if rng.random() < 0.4:
                left = rng.random() < 0.3
                GroupMember.objects.create(group=chats[chat_id], userid=f"wm{i}-{k}", customer=c,
                                           left_at=NOW - timedelta(days=2) if left else None)
                if not left:
                    f["groups"].add((chat_id, purpose))
        previous = ""
        for _ in range(rng.randint(0, 3)):
            days, code = rng.randint(0, 60), rng.choice(TIER_CODES)
            CustomerTierHistory.objects.create(customer=c, run=run, from_code=previous, to_code=code,
                                               at=NOW - timedelta(days=days, hours=1))
            f["tier_changes"].append((days, previous, code))
            previous = code
        for code in TAGS:
            if rng.random() < 0.4:
                CustomerTag.objects.create(customer=c, tag=tags[code], source="manual", set_by_label="t")
                f["tags"].add(code)
        for k in range(rng.randint(0, 4)):
            days, ptype, amount = rng.randint(0, 60), rng.choice(PRODUCT_TYPES), Decimal(rng.choice([100, 1000, 9000]))
            TradeFactory(customer=c, product=products[ptype], traded_at=NOW - timedelta(days=days, hours=1),
                         amount=amount, external_id=f"T{i}-{k}")
            f["trades"].append((days, ptype, amount))
        for k in range(rng.randint(0, 5)):
            days, etype = rng.randint(0, 60), rng.choice(EVENT_TYPES)
            BehaviourEvent.objects.create(event_id=f"E{i}-{k}", customer=c, type=etype,
                                          occurred_at=NOW - timedelta(days=days, hours=1))
            f["events"].append((days, etype))
        facts[c.pk] = f
    return facts


def _tier_change(rule, f, ranks) -> bool:
    for days, before, after in f["tier_changes"]:
        if days >= rule["within_days"] or (rule.get("to") and after not in rule["to"]):
            continue
        if rule["direction"] == "any":
            return True
        if before in ranks and after in ranks and (
                ranks[after] > ranks[before] if rule["direction"] == "down" else ranks[after] < ranks[before]):
            return True
    return False


def _compare(op, left, right):
    return {"eq": left == right, "ne": left != right, "gt": left > right, "gte": left >= right,
            "lt": left < right, "lte": left <= right}[op]


def _custom(rule, values) -> bool:
    """A custom field condition: comparisons hold only for customers with a value (customers/custom_fields.py)."""
    field_type = CUSTOM[rule["field"]][0]
    actual, op, value = values.get(rule["field"]), rule["op"], rule.get("value")
    if op in ("is_set", "is_not_set"):
        return (actual is not None) == (op == "is_set")
    if actual is None:
        return False
    convert = {"number": lambda v: Decimal(str(v)), "date": date.fromisoformat}.get(field_type, lambda v: v)
    if op == "has_any":
        return any(v in actual for v in value)
    if op == "has_all":
        return all(v in actual for v in value)
    if op == "contains":
        return value in actual
    actual = convert(actual)
    if op in ("in", "not_in"):
        return (actual in [convert(v) for v in value]) == (op == "in")
    if op == "between":
        return convert(value[0]) <= actual <= convert(value[1])
    return _compare(op, actual, convert(value))


def evaluate(rule, f, ranks=None) -> bool:
    """The plain-Python reading of the rule language (segments/rules.py docstring)."""
    if "rules" in rule:
        results = [evaluate(child, f, ranks) for child in rule["rules"]]
        value = all(results) if rule["op"] == "and" else any(results)
    elif rule["type"] == "attribute":
        actual = f[rule["field"]]
        if rule["op"] in ("in", "not_in"):
            value = (actual in rule["value"]) == (rule["op"] == "in")
        else:
            value = _compare(rule["op"], actual, Decimal(str(rule["value"])) if rule["field"] == "total_assets"
                             else rule["value"])
    elif rule["type"] == "tag":
        value = (rule["tag"] in f["tags"]) == (rule["op"] == "has")
    elif rule["type"] == "segment":
        value = (rule["segment"] in f["segments"]) == (rule["op"] == "in")
    elif rule["type"] == "group":
        value = any((not rule.get("group") or chat_id == rule["group"]) and
                    (not rule.get("purpose") or purpose == rule["purpose"]) for chat_id, purpose in f["groups"])
        value = value == (rule["op"] == "member")
    elif rule["type"] == "tier_change":
        value = _tier_change(rule, f, ranks)
    elif rule["type"] == "custom":
        value = _custom(rule, f["custom"])
    elif rule["type"] == "trades":
        rows = [t for t in f["trades"] if t[0] < rule["within_days"]
                and (not rule.get("product_type") or t[1] == rule["product_type"])]
        measure = len(rows) if rule["measure"] == "count" else sum((t[2] for t in rows), Decimal(0))
        value = _compare(rule["op"], measure, Decimal(str(rule["value"])))
    else:
        rows = [e for e in f["events"] if e[0] < rule["within_days"] and e[1] == rule["event_type"]]
        value = _compare(rule["op"], len(rows), rule["value"])
    return not value if rule.get("not") else value


COUNT_OPS = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])
WINDOW = st.sampled_from([7, 30, 90])
conditions = st.one_of(
    st.fixed_dictionaries({"type": st.just("attribute"), "field": st.just("risk_level"),
                           "op": st.sampled_from(["in", "not_in"]),
                           "value": st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3, unique=True)}),
    st.fixed_dictionaries({"type": st.just("attribute"), "field": st.just("gender"), "op": st.sampled_from(["eq", "ne"]),
                           "value": st.sampled_from("MFU")}),
    st.fixed_dictionaries({"type": st.just("attribute"), "field": st.just("total_assets"), "op": COUNT_OPS,
                           "value": st.sampled_from([0, 5000, 60000, 1000000])}),
    st.fixed_dictionaries({"type": st.just("tag"), "op": st.sampled_from(["has", "has_not"]),
                           "tag": st.sampled_from(TAGS)}),
    st.fixed_dictionaries({"type": st.just("trades"), "measure": st.sampled_from(["count", "amount"]), "op": COUNT_OPS,
                           "value": st.sampled_from([0, 1, 2, 1000, 5000]), "within_days": WINDOW},
                          optional={"product_type": st.sampled_from([*PRODUCT_TYPES, "bond"])}),
    st.fixed_dictionaries({"type": st.just("events"), "event_type": st.sampled_from(EVENT_TYPES), "op": COUNT_OPS,
                           "value": st.sampled_from([0, 1, 2, 3]), "within_days": WINDOW}),
    st.fixed_dictionaries({"type": st.just("segment"), "op": st.sampled_from(["in", "not_in"]),
                           "segment": st.sampled_from(SEGMENT_IDS)}),
    st.fixed_dictionaries({"type": st.just("group"), "op": st.sampled_from(["member", "not_member"])},
                          optional={"group": st.sampled_from([g for g, _ in GROUPS]),
                                    "purpose": st.sampled_from(PURPOSES)}),
    st.fixed_dictionaries({"type": st.just("tier_change"), "direction": st.sampled_from(["down", "up", "any"]),
                           "within_days": WINDOW},
                          optional={"to": st.lists(st.sampled_from(TIER_CODES), min_size=1, max_size=2, unique=True)}),
    *(st.fixed_dictionaries({"type": st.just("custom"), "field": st.just(code), "op": st.sampled_from(["is_set", "is_not_set"])})
      for code in CUSTOM),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("pref"), "op": st.sampled_from(["eq", "ne"]),
                           "value": st.sampled_from(CUSTOM["pref"][1] + ["已删除的选项"])}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("pref"), "op": st.sampled_from(["in", "not_in"]),
                           "value": st.lists(st.sampled_from(CUSTOM["pref"][1]), min_size=1, max_size=2, unique=True)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("hobbies"),
                           "op": st.sampled_from(["has_any", "has_all"]),
                           "value": st.lists(st.sampled_from(CUSTOM["hobbies"][1]), min_size=1, max_size=2, unique=True)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("score"), "op": COUNT_OPS,
                           "value": st.sampled_from(SCORES)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("score"), "op": st.just("between"),
                           "value": st.lists(st.sampled_from(SCORES), min_size=2, max_size=2)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("since"), "op": COUNT_OPS,
                           "value": st.sampled_from(DAYS)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("since"), "op": st.just("between"),
                           "value": st.lists(st.sampled_from(DAYS), min_size=2, max_size=2)}),
    st.fixed_dictionaries({"type": st.just("custom"), "field": st.just("memo"),
                           "op": st.sampled_from(["eq", "ne", "contains"]), "value": st.sampled_from(MEMOS + ["客户", "%"])}),
).flatmap(lambda c: st.booleans().map(lambda negate: {**c, "not": negate}))
rules = st.recursive(conditions, lambda children: st.fixed_dictionaries({
    "op": st.sampled_from(["and", "or"]), "not": st.booleans(),
    "rules": st.lists(children, min_size=1, max_size=3)}), max_leaves=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=rules)
def test_sql_matches_python(world, rule):
    tree = rule if "rules" in rule else {"op": "and", "rules": [rule]}
    ranks = world["_ranks"]
    expected = {pk for pk, facts in world.items() if pk != "_ranks" and evaluate(tree, facts, ranks)}
    assert set(rule_queryset(tree, now=NOW).values_list("pk", flat=True)) == expected
