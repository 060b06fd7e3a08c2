from datetime import date

import pytest

from core.errors import ApplicationError
from sop.calendar import CalendarUnknown, calendar_status, next_trading_day, trading_day_set
from sop.definition import DefinitionError, definition_validate
from sop.models import TemplateVersion
from sop.templates_lint import template_review, template_save

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("body, finding", [
    ("本产品保本保息，欢迎咨询", "保本"), ("稳赚不赔的机会", "稳赚"), ("零风险理财", "零风险"),
    ("A guaranteed return of 5%", "guaranteed return"),
])
def test_saving_a_template_with_a_forbidden_promise_is_refused_and_stores_nothing(operator, body, finding):
    with pytest.raises(ApplicationError) as exc:
        template_save(actor=operator, template=None, name="x", channel="sms", body=body)
    assert exc.value.code == "template_lint" and finding in exc.value.message
    assert not TemplateVersion.objects.exists()


def test_a_product_needs_a_risk_disclosure(operator):
    from customers.models import Product

    fund = Product.objects.create(code="F1", name="基金甲", type="fund", risk_level="R3")
    with pytest.raises(ApplicationError, match="风险提示"):
        template_save(actor=operator, template=None, name="x", channel="sms", body="{product}热销中", product=fund)
    ok = template_save(actor=operator, template=None, name="x", channel="sms", body="{product}热销中。投资有风险，入市需谨慎。",
                       product=fund)
    assert ok.status == "pending"


def test_unknown_variables_are_named(operator):
    with pytest.raises(ApplicationError, match="未知变量 {nmae}"):
        template_save(actor=operator, template=None, name="x", channel="sms", body="{nmae}您好")


def test_only_compliance_approves_and_a_rejection_needs_a_reason(operator, compliance):
    version = template_save(actor=operator, template=None, name="x", channel="sms", body="{name}您好")
    with pytest.raises(ApplicationError):
        template_review(actor=operator, version=version, approve=True)
    with pytest.raises(ApplicationError, match="原因"):
        template_review(actor=compliance, version=version, approve=False)
    template_review(actor=compliance, version=version, approve=True)
    assert version.template.approved_version() == version
    newer = template_save(actor=operator, template=version.template, name="x", channel="sms", body="{name}早上好")
    assert newer.number == 2 and version.template.approved_version() == version  # v2 waits for approval


def test_next_trading_day_skips_weekends_and_holidays():
    assert next_trading_day(date(2026, 9, 30)) == date(2026, 10, 8)  # National Day week
    assert next_trading_day(date(2026, 11, 27)) == date(2026, 11, 30)  # Friday → Monday


def test_an_unknown_day_is_never_assumed_open_or_closed(operator):
    with pytest.raises(CalendarUnknown):
        next_trading_day(date(2026, 12, 31))
    trading_day_set(actor=operator, day=date(2027, 1, 1), is_open=False, note="元旦")
    trading_day_set(actor=operator, day=date(2027, 1, 4), is_open=True)
    with pytest.raises(CalendarUnknown):  # 2027-01-02 is still unknown
        next_trading_day(date(2026, 12, 31))


def test_operators_are_warned_when_fewer_than_60_trading_days_are_known():
    status = calendar_status(date(2026, 11, 23))
    assert status["warning"] and status["future_trading_days"] < 60
    assert status["last_known_day"] == date(2026, 12, 31)
    assert not calendar_status(date(2026, 6, 1))["warning"]


@pytest.mark.parametrize("steps, path", [
    ([{"id": "a", "type": "wait", "minutes": 5, "next": "b"}], "$.steps[0].next"),
    ([{"id": "a", "type": "wait", "minutes": 5, "next": "b"}, {"id": "b", "type": "wait", "minutes": 5, "next": "a"}],
     "$.steps"),
    ([{"id": "a", "type": "teleport"}], "$.steps[0].type"),
    ([{"id": "a", "type": "branch", "condition": {"kind": "rule", "rule": {"type": "tier", "op": "in", "value": 3}}}],
     "$.steps[0].condition.rule.value"),
])
def test_bad_definitions_name_the_node(steps, path):
    with pytest.raises(DefinitionError) as exc:
        definition_validate({"trigger": {"type": "manual"}, "start": "a", "steps": steps})
    assert exc.value.path == path


@pytest.mark.parametrize("body", ["{name:>2000000}您好", "{name!r}您好", "{name.__class__}", "{name[0]}", "{ name }",
                                  "{name", "您好}"])
def test_only_bare_variables_are_accepted_and_nothing_is_formatted(operator, body):
    with pytest.raises(ApplicationError) as exc:
        template_save(actor=operator, template=None, name="x", channel="sms", body=body)
    assert exc.value.code == "template_invalid"
    assert not TemplateVersion.objects.exists()


def test_rendering_substitutes_bare_variables_and_never_evaluates_the_rest(advisor):
    from customers.tests.factories import CustomerFactory
    from sop.templates_lint import template_render

    customer = CustomerFactory(name="张三", advisor=advisor)
    assert template_render(TemplateVersion(body="{{name}} 是 {name}"), customer=customer, advisor=advisor,
                           tier_labels={}) == "{name} 是 张三"
    # a version stored before the rule keeps its odd token as text: no 2 MB padding, no attribute access
    old = TemplateVersion(body="{name:>2000000}|{name.__class__}|{name}")
    assert template_render(old, customer=customer, advisor=advisor, tier_labels={}) == \
        "{name:>2000000}|{name.__class__}|张三"


@pytest.mark.parametrize("disclosure", ["基金有风险，投资需谨慎。", "理财非存款、产品有风险、投资须谨慎。",
                                        "股市有风险、入市需谨慎。", "投资有风险。"])
def test_the_wordings_regulators_require_are_accepted_disclosures(operator, disclosure):
    from customers.models import Product

    fund = Product.objects.create(code="F1", name="基金甲", type="fund", risk_level="R3")
    version = template_save(actor=operator, template=None, name="x", channel="sms", body=f"{{product}}热销中。{disclosure}",
                            product=fund)
    assert version.status == "pending"


def test_compliance_maintains_the_accepted_disclosures(client, operator, compliance):
    from customers.models import Product
    from sop.models import ForbiddenPhrase

    fund = Product.objects.create(code="F1", name="基金甲", type="fund", risk_level="R3")
    body = "{product}热销中。市场波动，请审慎决策。"
    with pytest.raises(ApplicationError, match="风险提示"):
        template_save(actor=operator, template=None, name="x", channel="sms", body=body, product=fund)
    client.force_login(compliance)
    response = client.post("/sop/compliance/phrases/", {"kind": "disclosure", "phrase": "请审慎决策", "reason": "公司规定"})
    assert response.status_code == 302
    assert ForbiddenPhrase.objects.get(phrase="请审慎决策").kind == "disclosure"
    assert template_save(actor=operator, template=None, name="x", channel="sms", body=body, product=fund).status == "pending"
    page = client.get("/sop/compliance/phrases/").content.decode()
    assert 'data-testid="phrase-list-disclosure"' in page and "请审慎决策" in page and "基金有风险" in page
    # the same wording cannot be both forbidden and required
    response = client.post("/sop/compliance/phrases/", {"kind": "forbidden", "phrase": "请审慎决策"})
    assert response.status_code == 400 and "认可的风险提示" in response.content.decode()
