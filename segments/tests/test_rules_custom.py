"""The ``custom`` condition (custom fields, customers/custom_fields.py): validation with paths, the compiled SQL on
the stored values, the builder's editor, the rule summary, deactivated fields, and the members export."""

import csv
import io
import json

import pytest
from django.urls import reverse

from customers import services as customer_services
from customers.tests.factories import CustomerFactory
from segments import builder
from segments.exports import export_run
from segments.models import Segment, SegmentExport
from segments.rules import RuleError, rule_queryset, rule_validate

pytestmark = pytest.mark.django_db


def one(node):
    return {"op": "and", "rules": [node]}


@pytest.fixture
def fields(admin_user):
    make = customer_services.custom_field_definition_create
    return {
        "pref": make(actor=admin_user, code="pref", label="投资偏好", field_type="choice", options=["稳健", "平衡", "进取"]),
        "score": make(actor=admin_user, code="score", label="评分", field_type="number"),
        "review": make(actor=admin_user, code="review", label="回访日期", field_type="date"),
        "hobbies": make(actor=admin_user, code="hobbies", label="兴趣", field_type="multi_choice",
                        options=["基金", "股票"]),
        "memo": make(actor=admin_user, code="memo", label="备注", field_type="text"),
    }


@pytest.mark.parametrize("node, path, message", [
    ({"type": "custom", "field": "nope", "op": "is_set"}, "$.rules[0].field", "未知的自定义字段"),
    ({"type": "custom", "field": "pref", "op": "gt", "value": "稳健"}, "$.rules[0].op", "不支持运算"),
    ({"type": "custom", "field": "pref", "op": "in", "value": "稳健"}, "$.rules[0].value", "应为非空的列表"),
    ({"type": "custom", "field": "pref", "op": "in", "value": ["稳健", 3]}, "$.rules[0].value[1]", "应为字符串"),
    ({"type": "custom", "field": "score", "op": "gte", "value": "many"}, "$.rules[0].value", "应为数字"),
    ({"type": "custom", "field": "score", "op": "gte", "value": True}, "$.rules[0].value", "应为数字"),
    ({"type": "custom", "field": "score", "op": "between", "value": [1]}, "$.rules[0].value", "应为 [下限, 上限]"),
    ({"type": "custom", "field": "review", "op": "lt", "value": "2025/01/01"}, "$.rules[0].value", "应为日期"),
    ({"type": "custom", "field": "review", "op": "between", "value": ["2025-01-01", "2025-02-30"]},
     "$.rules[0].value[1]", "日期格式应为 YYYY-MM-DD"),
    ({"type": "custom", "field": "hobbies", "op": "eq", "value": "基金"}, "$.rules[0].op", "不支持运算"),
    ({"type": "custom", "field": "memo", "op": "is_set", "value": "x"}, "$.rules[0].value", "不需要值"),
    ({"type": "custom", "field": "memo", "op": "eq", "value": "x", "within_days": 3}, "$.rules[0].within_days",
     "没有字段"),
])
def test_custom_conditions_are_validated_with_the_path(fields, node, path, message):
    with pytest.raises(RuleError) as err:
        rule_validate(one(node))
    assert err.value.path == path and message in err.value.message


def test_custom_conditions_select_on_the_stored_values(fields, advisor):
    a = CustomerFactory(advisor=advisor, custom_fields={"pref": "稳健", "score": 12.5, "review": "2025-03-01",
                                                        "hobbies": ["基金", "股票"], "memo": "老客户"})
    b = CustomerFactory(advisor=advisor, custom_fields={"pref": "进取", "score": 80, "hobbies": ["基金"]})
    c = CustomerFactory(advisor=advisor)

    def found(node):
        return set(rule_queryset(one(node)).values_list("pk", flat=True))

    assert found({"type": "custom", "field": "pref", "op": "eq", "value": "稳健"}) == {a.pk}
    assert found({"type": "custom", "field": "pref", "op": "ne", "value": "稳健"}) == {b.pk}  # only with a value
    assert found({"type": "custom", "field": "pref", "op": "ne", "value": "稳健", "not": True}) == {a.pk, c.pk}
    assert found({"type": "custom", "field": "pref", "op": "not_in", "value": ["平衡"]}) == {a.pk, b.pk}
    assert found({"type": "custom", "field": "score", "op": "gt", "value": 12}) == {a.pk, b.pk}
    assert found({"type": "custom", "field": "score", "op": "lte", "value": "12.5"}) == {a.pk}
    assert found({"type": "custom", "field": "score", "op": "eq", "value": 80}) == {b.pk}
    assert found({"type": "custom", "field": "score", "op": "between", "value": [13, 100], "not": True}) == {a.pk, c.pk}
    assert found({"type": "custom", "field": "review", "op": "lt", "value": "2025-12-31"}) == {a.pk}
    assert found({"type": "custom", "field": "hobbies", "op": "has_all", "value": ["股票", "基金"]}) == {a.pk}
    assert found({"type": "custom", "field": "hobbies", "op": "has_any", "value": ["基金"]}) == {a.pk, b.pk}
    assert found({"type": "custom", "field": "memo", "op": "contains", "value": "老"}) == {a.pk}
    assert found({"type": "custom", "field": "memo", "op": "is_not_set"}) == {b.pk, c.pk}


def test_a_deactivated_field_still_compiles_so_saved_segments_keep_working(fields, advisor, admin_user):
    a = CustomerFactory(advisor=advisor, custom_fields={"pref": "稳健"})
    rule = one({"type": "custom", "field": "pref", "op": "in", "value": ["稳健"]})
    customer_services.custom_field_definition_set_active(actor=admin_user, definition=fields["pref"], active=False)
    assert set(rule_queryset(rule).values_list("pk", flat=True)) == {a.pk}
    editor = builder.render_nodes(rule, principal=admin_user)["children"][0]["editor"]
    assert ("pref", "投资偏好（已停用）") in editor["field_choices"]


def test_rule_summary_in_words(fields):
    assert builder.rule_summary(one({"type": "custom", "field": "pref", "op": "in", "value": ["稳健", "平衡"]})) == \
        "自定义字段「投资偏好」 属于 稳健、平衡"
    assert builder.rule_summary(one({"type": "custom", "field": "score", "op": "between", "value": [1, 5]})) == \
        "自定义字段「评分」 介于 1 至 5"
    assert builder.rule_summary(one({"type": "custom", "field": "memo", "op": "is_not_set", "not": True})) == \
        "非 自定义字段「备注」 无值"


def test_builder_edits_a_custom_condition_and_counts(client, fields, operator, advisor):
    CustomerFactory(advisor=advisor, custom_fields={"score": 30})
    CustomerFactory(advisor=advisor, custom_fields={"score": 70})
    client.force_login(operator)
    tree = one({"type": "attribute", "field": "risk_level", "op": "in", "value": ["C3"]})
    # switching the type starts the node over as a condition on the first active field
    response = client.post(reverse("segments:builder"), {"rule": json.dumps(tree), "f:$.rules[0]:type": "custom",
                                                         "f:$.rules[0]:_present": "1"})
    body = response.content.decode()
    assert response.status_code == 200 and 'data-type="custom"' in body
    node = {"type": "custom", "field": "score", "op": "eq", "value": 0}
    response = client.post(reverse("segments:builder"), {
        "rule": json.dumps(one(node)), "f:$.rules[0]:_present": "1", "f:$.rules[0]:type": "custom",
        "f:$.rules[0]:field": "score", "f:$.rules[0]:op": "gte", "f:$.rules[0]:value": "50"})
    body = response.content.decode()
    assert 'data-count="1"' in body
    tree = json.loads(body.split('name="rule" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert tree["rules"][0] == {"type": "custom", "field": "score", "op": "gte", "value": 50}
    # a choice field's list operator takes the ticked options
    node = {"type": "custom", "field": "pref", "op": "eq", "value": "稳健"}
    fields_post = {"rule": json.dumps(one(node)), "f:$.rules[0]:_present": "1", "f:$.rules[0]:type": "custom",
                   "f:$.rules[0]:field": "pref", "f:$.rules[0]:op": "in", "f:$.rules[0]:value": ["平衡", "进取"]}
    tree = builder.apply_fields(one(node), builder.fields_from_post(_querydict(fields_post)))
    assert tree["rules"][0] == {"type": "custom", "field": "pref", "op": "in", "value": ["平衡", "进取"]}


def _querydict(data):
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    for key, value in data.items():
        query.setlist(key, value if isinstance(value, list) else [value])
    return query


def test_members_export_carries_the_active_custom_fields(settings, tmp_path, fields, operator, advisor, admin_user):
    settings.MEDIA_ROOT = str(tmp_path)
    customer = CustomerFactory(advisor=advisor, external_id="EXP-1",
                               custom_fields={"pref": "稳健", "score": 12.5, "hobbies": ["基金", "股票"],
                                              "memo": "=cmd()"})
    customer_services.custom_field_definition_set_active(actor=admin_user, definition=fields["review"], active=False)
    segment = Segment.objects.create(name="导出", rule=one({"type": "custom", "field": "pref", "op": "is_set"}))
    segment.members.create(customer=customer)
    export = SegmentExport.objects.create(segment=segment, created_by=operator, format="csv")
    export = export_run(export_id=export.pk)
    assert export.status == "done", export.error
    with export.file.open("rb") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode("utf-8-sig"))))
    assert rows[0][-4:] == ["投资偏好", "评分", "兴趣", "备注"]  # the deactivated 回访日期 is left out
    assert rows[1][0] == "EXP-1" and rows[1][-4:] == ["稳健", "12.5", "基金、股票", "'=cmd()"]
