"""Message templates over HTTP: lint inline, drafts, preview, compliance approval, forbidden phrases."""

import pytest

from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from sop.models import ForbiddenPhrase, MessageTemplate, TemplateVersion
from sop.templates_lint import template_save

pytestmark = pytest.mark.django_db


def _post_template(client, body, action="submit", **extra):
    data = {"name": "开户欢迎", "channel": "sms", "body": body, "action": action, **extra}
    return client.post("/sop/templates/new/", data)


def test_operator_sees_the_forbidden_phrase_with_its_position_and_nothing_is_stored(client, operator):
    client.force_login(operator)
    response = _post_template(client, "{name}您好，本产品保本保息。")
    assert response.status_code == 400
    body = response.content.decode()
    assert "第 13 字起含禁用表述「保本」" in body
    assert 'data-testid="lint-mark">保本</mark>' in body
    assert not TemplateVersion.objects.exists() and not MessageTemplate.objects.exists()


def test_a_product_without_risk_disclosure_is_refused_and_a_fixed_text_goes_to_compliance(client, operator):
    from customers.models import Product

    fund = Product.objects.create(code="F9", name="稳健债基", type="fund", risk_level="R2")
    client.force_login(operator)
    response = _post_template(client, "{name}您好，{product}今日发售。", product=fund.pk)
    assert response.status_code == 400 and "须附合规认可的风险提示" in response.content.decode()
    response = _post_template(client, "{name}您好，{product}今日发售。投资有风险，入市需谨慎。", product=fund.pk)
    assert response.status_code == 302
    version = TemplateVersion.objects.get()
    assert (version.status, version.product, version.created_by) == ("pending", fund, operator)
    page = client.get(response["Location"]).content.decode()
    assert "待合规审核" in page and "v1" in page


def test_missing_name_is_a_field_error(client, operator):
    client.force_login(operator)
    response = client.post("/sop/templates/new/", {"name": "", "channel": "sms", "body": "{name}您好"})
    assert response.status_code == 400 and 'data-testid="field-error-name"' in response.content.decode()
    assert not MessageTemplate.objects.exists()


def test_a_draft_keeps_its_findings_and_cannot_be_submitted_until_fixed(client, operator):
    client.force_login(operator)
    response = _post_template(client, "稳赚的机会", action="draft")
    assert response.status_code == 302
    draft = TemplateVersion.objects.get()
    assert draft.status == "draft" and draft.lint[0]["text"] == "稳赚"
    response = client.post(f"/sop/templates/versions/{draft.pk}/submit/", follow=True)
    assert "不能提交" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"
    response = client.post(f"/sop/templates/{draft.template_id}/", {"name": "开户欢迎", "body": "{name}您好",
                                                                     "action": "draft"})
    newer = TemplateVersion.objects.get(number=2)
    assert response.status_code == 302 and newer.status == "draft" and newer.lint == []
    client.post(f"/sop/templates/versions/{newer.pk}/submit/")
    newer.refresh_from_db()
    assert newer.status == "pending"


def test_the_live_preview_renders_for_a_visible_client(client, operator, advisor):
    CustomerFactory(advisor=advisor, name="王小明")
    client.force_login(operator)
    response = client.post("/sop/templates/lint/", {"body": "{name}您好，我是{advisor}。", "channel": "sms"})
    html = response.content.decode()
    assert response.status_code == 200 and "王小明您好，我是advisor_a。" in html and "合规检查通过" in html
    response = client.post("/sop/templates/lint/", {"body": "{nmae}您好", "channel": "sms"})
    assert "未知变量 {nmae}" in response.content.decode()


def test_template_list_shows_channel_latest_version_and_status(client, operator, compliance):
    v1 = template_save(actor=operator, template=None, name="企微问候", channel="wecom", body="{name}您好")
    client.force_login(compliance)
    client.post(f"/sop/compliance/approvals/{v1.pk}/review/", {"decision": "approve"})
    template_save(actor=operator, template=v1.template, name="企微问候", channel="wecom", body="{name}早上好")
    client.force_login(operator)
    html = client.get("/sop/templates/").content.decode()
    assert "企微问候" in html and "企业微信 1 对 1" in html and "v2" in html and "待合规审核" in html


@pytest.mark.parametrize("role", ["advisor", "compliance", "branch_manager"])
def test_template_pages_are_for_operators_and_admins(client, role, advisor, compliance, branch_manager):
    client.force_login({"advisor": advisor, "compliance": compliance, "branch_manager": branch_manager}[role])
    assert client.get("/sop/templates/").status_code == 404
    assert _post_template(client, "{name}您好").status_code == 404
    assert not TemplateVersion.objects.exists()


# --- approval queue ------------------------------------------------------------------------

def test_compliance_sees_the_queue_with_product_risk_and_diff_and_approves(client, operator, compliance):
    from customers.models import Product

    fund = Product.objects.create(code="F7", name="科技成长基金", type="fund", risk_level="R4")
    v1 = template_save(actor=operator, template=None, name="基金推荐", channel="sms",
                       body="{name}您好，{product}发售。投资有风险，入市需谨慎。", product=fund)
    client.force_login(compliance)
    client.post(f"/sop/compliance/approvals/{v1.pk}/review/", {"decision": "approve"})
    v2 = template_save(actor=operator, template=v1.template, name="基金推荐", channel="sms",
                       body="{name}您好，{product}热销。投资有风险，入市需谨慎。", product=fund)
    html = client.get("/sop/compliance/approvals/").content.decode()
    assert "科技成长基金" in html and "R4 中高风险" in html
    assert '<del class="text-danger">发售</del>' in html and '<ins class="text-success">热销</ins>' in html
    response = client.post(f"/sop/compliance/approvals/{v2.pk}/review/", {"decision": "approve", "note": "可以"})
    assert response.status_code == 302
    v2.refresh_from_db()
    assert (v2.status, v2.reviewed_by, v2.review_note) == ("approved", compliance, "可以")
    assert v2.template.approved_version() == v2
    assert AuditLog.objects.filter(action="sop.template_approved", target_id=str(v2.pk)).exists()
    assert "基金推荐 v2" in client.get("/sop/compliance/approvals/").content.decode()  # in the history


def test_the_queue_takes_the_same_number_of_queries_however_long_it_is(client, operator, compliance, advisor):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    CustomerFactory(advisor=advisor)
    client.force_login(compliance)

    def queries_with(n):
        for i in range(n):
            template_save(actor=operator, template=None, name=f"问候{len(TemplateVersion.objects.all())}-{i}",
                          channel="sms", body="{name}您好，我是您的投顾{advisor}。")
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/sop/compliance/approvals/").status_code == 200
        return len(captured)

    assert queries_with(1) == queries_with(4)


def test_a_rejection_needs_a_note_and_changes_nothing_without_it(client, operator, compliance):
    version = template_save(actor=operator, template=None, name="x", channel="sms", body="{name}您好")
    client.force_login(compliance)
    response = client.post(f"/sop/compliance/approvals/{version.pk}/review/", {"decision": "reject", "note": " "})
    assert response.status_code == 400 and 'data-testid="review-note-error"' in response.content.decode()
    version.refresh_from_db()
    assert version.status == "pending"
    client.post(f"/sop/compliance/approvals/{version.pk}/review/", {"decision": "reject", "note": "语气不当"})
    version.refresh_from_db()
    assert (version.status, version.review_note) == ("rejected", "语气不当")


def test_advisors_and_operators_cannot_approve(client, operator, advisor):
    version = template_save(actor=operator, template=None, name="x", channel="sms", body="{name}您好")
    for user in (advisor, operator):
        client.force_login(user)
        assert client.get("/sop/compliance/approvals/").status_code == 404
        assert client.post(f"/sop/compliance/approvals/{version.pk}/review/", {"decision": "approve"}).status_code == 404
    version.refresh_from_db()
    assert version.status == "pending"


def test_nobody_approves_their_own_version(client, admin_user):
    version = template_save(actor=admin_user, template=None, name="x", channel="sms", body="{name}您好")
    client.force_login(admin_user)
    assert "须由其他合规人员审核" in client.get("/sop/compliance/approvals/").content.decode()
    response = client.post(f"/sop/compliance/approvals/{version.pk}/review/", {"decision": "approve"})
    assert response.status_code == 400 and "不能审核自己提交的版本" in response.content.decode()
    version.refresh_from_db()
    assert version.status == "pending"


def test_a_phrase_added_after_submission_blocks_the_approval(client, operator, compliance):
    version = template_save(actor=operator, template=None, name="x", channel="sms", body="{name}您好，必涨行情来了")
    client.force_login(compliance)
    client.post("/sop/compliance/phrases/", {"phrase": "必涨", "reason": "承诺收益"})
    html = client.get("/sop/compliance/approvals/").content.decode()
    assert "含禁用表述「必涨」" in html
    response = client.post(f"/sop/compliance/approvals/{version.pk}/review/", {"decision": "approve"})
    assert response.status_code == 400
    version.refresh_from_db()
    assert version.status == "pending"


# --- forbidden phrases ---------------------------------------------------------------------

def test_compliance_maintains_the_phrase_list_and_the_lint_follows_it(client, operator, compliance):
    client.force_login(compliance)
    assert client.post("/sop/compliance/phrases/", {"phrase": "", "reason": ""}).status_code == 400
    response = client.post("/sop/compliance/phrases/", {"phrase": "保本", "reason": "dup"})
    assert response.status_code == 400 and "已存在" in response.content.decode()
    response = client.post("/sop/compliance/phrases/", {"phrase": "翻倍", "reason": "夸大收益"})
    assert response.status_code == 302
    assert ForbiddenPhrase.objects.get(phrase="翻倍").created_by == compliance
    with pytest.raises(Exception, match="翻倍"):
        template_save(actor=operator, template=None, name="x", channel="sms", body="收益翻倍")
    phrase = ForbiddenPhrase.objects.get(phrase="翻倍")
    client.post(f"/sop/compliance/phrases/{phrase.pk}/active/", {"active": "0"})
    phrase.refresh_from_db()
    assert phrase.active is False
    assert template_save(actor=operator, template=None, name="x", channel="sms", body="收益翻倍").status == "pending"
    assert AuditLog.objects.filter(action="sop.phrase_deactivated").exists()


def test_operators_cannot_change_the_phrase_list(client, operator):
    client.force_login(operator)
    assert client.post("/sop/compliance/phrases/", {"phrase": "翻倍"}).status_code == 404
    assert not ForbiddenPhrase.objects.filter(phrase="翻倍").exists()
