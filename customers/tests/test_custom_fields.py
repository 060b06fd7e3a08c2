"""Custom fields: definitions (admins, audited), values on the 360° page (validation per type, nothing stored on an
error, who may edit), the 我的客户 filter, the ingest pipeline (API rows and the file import) and what a change of a
definition does to stored values (nothing: hidden or flagged, never lost)."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile

from core.errors import ApplicationError
from core.models import AuditLog
from customers import custom_fields as cf
from customers import services
from customers.imports import import_job_create, import_job_run, import_template_header
from customers.ingest import customer_bulk_upsert
from customers.models import Customer, CustomFieldDefinition, ImportJobError
from customers.selectors import customer_list
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fields(admin_user):
    """One field of each type."""
    make = services.custom_field_definition_create
    return {
        "note": make(actor=admin_user, code="note", label="备注", field_type="text", max_length=10, order=1),
        "score": make(actor=admin_user, code="score", label="评分", field_type="number", min_value=0,
                      max_value=Decimal("100"), order=2),
        "review": make(actor=admin_user, code="review", label="回访日期", field_type="date", order=3),
        "pref": make(actor=admin_user, code="pref", label="投资偏好", field_type="choice",
                     options=["稳健", "平衡", "进取"], required=True, order=4),
        "hobbies": make(actor=admin_user, code="hobbies", label="兴趣", field_type="multi_choice",
                        options=["基金", "股票", "债券"], order=5),
    }


GOOD = {"note": " 老客户 ", "score": "88.5", "review": "2027/1/5", "pref": "平衡", "hobbies": ["债券", "基金"]}


# --- definitions ---------------------------------------------------------------------------------

def test_definitions_are_created_by_admins_only_and_audited(fields, admin_user, operator):
    assert [d.code for d in cf.definitions_active()] == ["note", "score", "review", "pref", "hobbies"]
    audit = AuditLog.objects.filter(action="custom_field.create", target_id="pref").get()
    assert audit.actor == admin_user and audit.details["options"] == ["稳健", "平衡", "进取"]
    with pytest.raises(ApplicationError) as exc:
        services.custom_field_definition_create(actor=operator, code="x", label="X", field_type="text")
    assert exc.value.status_code == 403


@pytest.mark.parametrize("kwargs, field", [
    ({"code": "Bad-Code", "label": "X", "field_type": "text"}, "code"),
    ({"code": "note", "label": "X", "field_type": "text"}, "code"),  # taken
    ({"code": "x", "label": "", "field_type": "text"}, "label"),
    ({"code": "x", "label": "X", "field_type": "choice", "options": []}, "options"),
    ({"code": "x", "label": "X", "field_type": "choice", "options": ["a", "A"]}, "options"),
    ({"code": "x", "label": "X", "field_type": "multi_choice", "options": ["a,b"]}, "options"),
    ({"code": "x", "label": "X", "field_type": "number", "min_value": 5, "max_value": 1}, "max_value"),
    ({"code": "x", "label": "X", "field_type": "text", "max_length": 501}, "max_length"),
    ({"code": "x", "label": "X", "field_type": "colour"}, "type"),
])
def test_invalid_definitions_name_the_field(fields, admin_user, kwargs, field):
    with pytest.raises(ApplicationError) as exc:
        services.custom_field_definition_create(actor=admin_user, **kwargs)
    assert exc.value.details[0]["field"] == field
    assert not CustomFieldDefinition.objects.filter(code="x").exists()


# --- values on the 360° page ------------------------------------------------------------------

def test_each_type_is_cleaned_and_stored_in_its_json_shape(fields, advisor):
    customer = CustomerFactory(advisor=advisor)
    services.customer_custom_fields_set(actor=advisor, customer=customer, values=GOOD)
    customer.refresh_from_db()
    assert customer.custom_fields == {"note": "老客户", "score": 88.5, "review": "2027-01-05", "pref": "平衡",
                                      "hobbies": ["基金", "债券"]}  # options order, future dates allowed
    audit = AuditLog.objects.get(action="customer.custom_fields_set", target_id=customer.external_id)
    assert audit.details == {"fields": ["hobbies", "note", "pref", "review", "score"]}  # codes, never values
    rows = {r["code"]: r for r in cf.custom_fields_rows(customer, cf.definitions_active())}
    assert rows["hobbies"]["text"] == "基金、债券" and rows["score"]["text"] == "88.5" and not rows["pref"]["problem"]


@pytest.mark.parametrize("code, raw, error_code, reason", [
    ("note", "一二三四五六七八九十十一", "too_long", "最多 10 个字符"),
    ("score", "abc", "invalid_decimal", "应为数字"),
    ("score", "101", "out_of_range", "应不大于 100"),
    ("score", "-1", "out_of_range", "应不小于 0"),
    ("score", "1.1234567", "invalid_decimal", "最多 6 位小数"),
    ("review", "2027-02-30", "invalid_date", "日期格式应为 YYYY-MM-DD"),
    ("review", "1899-12-31", "invalid_date", "日期应在 1900–2199 年之间"),
    ("pref", "激进", "invalid_choice", "取值无效，可选：稳健/平衡/进取"),
    ("pref", "", "required", "必填"),
    ("hobbies", ["基金", "黄金"], "invalid_choice", "取值无效，可选：基金/股票/债券"),
])
def test_a_bad_value_names_field_and_reason_and_nothing_is_stored(fields, advisor, code, raw, error_code, reason):
    customer = CustomerFactory(advisor=advisor, custom_fields={"note": "原值"})
    with pytest.raises(ApplicationError) as exc:
        services.customer_custom_fields_set(actor=advisor, customer=customer, values={**GOOD, code: raw})
    assert exc.value.code == "custom_values_invalid"
    assert exc.value.details == [{"field": code, "code": error_code, "message": reason}]
    customer.refresh_from_db()
    assert customer.custom_fields == {"note": "原值"}
    assert not AuditLog.objects.filter(action="customer.custom_fields_set").exists()


def test_blank_clears_unknown_fields_are_refused_and_inactive_values_are_kept(fields, advisor, admin_user):
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["note"], active=False)
    customer = CustomerFactory(advisor=advisor, custom_fields={"note": "隐藏的值", "score": 5})
    services.customer_custom_fields_set(actor=advisor, customer=customer, values={"pref": "稳健", "score": ""})
    customer.refresh_from_db()
    assert customer.custom_fields == {"note": "隐藏的值", "pref": "稳健"}
    with pytest.raises(ApplicationError) as exc:
        services.customer_custom_fields_set(actor=advisor, customer=customer, values={"pref": "稳健", "nope": "x",
                                                                                      "note": "改"})
    assert {(d["field"], d["code"]) for d in exc.value.details} == {("nope", "unknown_field"),
                                                                     ("note", "inactive_field")}


def test_definition_changes_never_lose_values_they_hide_or_flag_them(fields, advisor, admin_user):
    customer = CustomerFactory(advisor=advisor, custom_fields={"pref": "进取", "hobbies": ["股票"], "score": 90})
    result = services.custom_field_definition_update(actor=admin_user, definition=fields["pref"], label="投资偏好",
                                                     options=["稳健", "平衡"], required=True)
    assert result["not_fitting"] == 1
    services.custom_field_definition_update(actor=admin_user, definition=fields["score"], label="评分",
                                            min_value=0, max_value=50)
    customer.refresh_from_db()
    assert customer.custom_fields == {"pref": "进取", "hobbies": ["股票"], "score": 90}
    rows = {r["code"]: r for r in cf.custom_fields_rows(customer, cf.definitions_active())}
    assert rows["pref"]["text"] == "进取" and "已不在选项中：进取" in rows["pref"]["problem"]
    assert "应不大于 50" in rows["score"]["problem"]
    audit = AuditLog.objects.filter(action="custom_field.update", target_id="pref").get()
    assert audit.details["removed_options"] == ["进取"] and audit.details["values_not_fitting"] == 1
    # saving the page again with the old values does not force a change; a new value must fit
    services.customer_custom_fields_set(actor=advisor, customer=customer,
                                        values={"pref": "进取", "hobbies": ["股票"], "score": "90", "note": "新"})
    customer.refresh_from_db()
    assert customer.custom_fields["pref"] == "进取" and customer.custom_fields["note"] == "新"
    # deactivated: hidden from the page, the value stays; reactivated: shown again
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["pref"], active=False)
    assert "pref" not in [d.code for d in cf.definitions_active()]
    customer.refresh_from_db()
    assert customer.custom_fields["pref"] == "进取"
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["pref"], active=True)
    assert "pref" in [d.code for d in cf.definitions_active()]
    assert AuditLog.objects.filter(action="custom_field.deactivate", target_id="pref").get().details == {
        "customers_with_value": 1}


# --- who may edit: the page --------------------------------------------------------------------

def test_an_advisor_edits_their_client_but_not_another_advisors(client, fields, advisor, same_branch_advisor):
    mine = CustomerFactory(advisor=advisor)
    theirs = CustomerFactory(advisor=same_branch_advisor)
    client.force_login(advisor)
    post = {"cf:pref": "稳健", "cf:score": "12", "cf:hobbies": ["基金", "股票"]}
    response = client.post(f"/customers/c/{mine.external_id}/custom-fields/", post, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "已保存" in response.content.decode()
    mine.refresh_from_db()
    assert mine.custom_fields == {"pref": "稳健", "score": 12, "hobbies": ["基金", "股票"]}
    assert client.post(f"/customers/c/{theirs.external_id}/custom-fields/", post).status_code == 404
    assert client.get(f"/customers/c/{theirs.external_id}/custom-fields/?mode=edit").status_code == 404
    theirs.refresh_from_db()
    assert theirs.custom_fields == {}


def test_a_bad_value_answers_the_form_with_the_reason(client, fields, advisor):
    customer = CustomerFactory(advisor=advisor)
    client.force_login(advisor)
    response = client.post(f"/customers/c/{customer.external_id}/custom-fields/", {"cf:pref": "", "cf:score": "500"})
    body = response.content.decode()
    assert response.status_code == 400
    assert 'data-testid="cf-error-score"' in body and "应不大于 100" in body and "必填" in body
    customer.refresh_from_db()
    assert customer.custom_fields == {}


@pytest.mark.parametrize("role", ["operator", "hq_manager", "compliance"])
def test_reading_roles_see_the_values_but_may_not_edit(client, request, fields, advisor, role):
    customer = CustomerFactory(advisor=advisor, custom_fields={"pref": "稳健"})
    client.force_login(request.getfixturevalue(role))
    page = client.get(f"/customers/c/{customer.external_id}/").content.decode()
    assert 'data-testid="cf-value-pref">稳健' in page and 'data-testid="custom-fields-edit"' not in page
    assert client.get(f"/customers/c/{customer.external_id}/custom-fields/?mode=edit").status_code == 403
    assert client.post(f"/customers/c/{customer.external_id}/custom-fields/", {"cf:pref": "进取"}).status_code == 403
    customer.refresh_from_db()
    assert customer.custom_fields == {"pref": "稳健"}


def test_branch_manager_and_admin_may_edit(client, fields, advisor, branch_manager, admin_user):
    customer = CustomerFactory(advisor=advisor)
    for user, pref in ((branch_manager, "平衡"), (admin_user, "进取")):
        client.force_login(user)
        assert 'data-testid="custom-fields-edit"' in client.get(f"/customers/c/{customer.external_id}/").content.decode()
        assert client.post(f"/customers/c/{customer.external_id}/custom-fields/", {"cf:pref": pref}).status_code == 200
        customer.refresh_from_db()
        assert customer.custom_fields["pref"] == pref


def test_definition_pages_are_for_admins(client, fields, admin_user, operator, advisor):
    client.force_login(admin_user)
    assert "投资偏好" in client.get("/customers/fields/").content.decode()
    response = client.post("/customers/fields/new/", {"code": "channel_pref", "label": "偏好渠道", "type": "choice",
                                                      "options": "电话\n企业微信\n", "order": "9"})
    assert response.status_code == 302
    assert CustomFieldDefinition.objects.get(code="channel_pref").options == ["电话", "企业微信"]
    pref = fields["pref"]
    response = client.post(f"/customers/fields/{pref.pk}/", {"code": "changed", "type": "text", "label": "风格",
                                                             "options": "稳健\n平衡", "required": "on"})
    pref.refresh_from_db()
    assert response.status_code == 302 and (pref.code, pref.type, pref.label) == ("pref", "choice", "风格")
    client.post(f"/customers/fields/{pref.pk}/active/", {"active": "0"})
    pref.refresh_from_db()
    assert not pref.active
    for user in (operator, advisor):
        client.force_login(user)
        assert client.get("/customers/fields/").status_code == 404
        assert client.post(f"/customers/fields/{pref.pk}/active/", {"active": "1"}).status_code == 404


# --- the 我的客户 filter ---------------------------------------------------------------------------

def test_list_filter_per_type(fields, advisor, same_branch_advisor):
    a = CustomerFactory(advisor=advisor, custom_fields={"pref": "稳健", "score": 20, "review": "2027-03-01",
                                                        "hobbies": ["基金"], "note": "爱喝茶"})
    b = CustomerFactory(advisor=advisor, custom_fields={"pref": "进取", "score": 80, "hobbies": ["基金", "股票"]})
    CustomerFactory(advisor=advisor)
    CustomerFactory(advisor=same_branch_advisor, custom_fields={"pref": "稳健"})  # not the advisor's

    def found(**params):
        from django.http import QueryDict

        from customers.forms import CustomerFilterForm

        query = QueryDict(mutable=True)
        query.update(params)
        form = CustomerFilterForm(query, user=advisor)
        assert form.is_valid(), form.errors
        return {c.pk for c in customer_list(user=advisor, filters=form.filters()).customers}

    assert found(cf_pref="稳健") == {a.pk}
    assert found(cf_score_min="50") == {b.pk}
    assert found(cf_score_min="10", cf_score_max="20") == {a.pk}
    assert found(cf_review_from="2027-01-01") == {a.pk}
    assert found(cf_hobbies="股票") == {b.pk}
    assert found(cf_note="喝茶") == {a.pk}
    assert found(cf_pref="稳健", cf_score_min="50") == set()


def test_list_page_shows_the_filters_and_chips(client, fields, advisor):
    CustomerFactory(advisor=advisor, name="客户稳甲", custom_fields={"pref": "稳健"})
    CustomerFactory(advisor=advisor, name="客户进乙", custom_fields={"pref": "进取"})
    client.force_login(advisor)
    body = client.get("/customers/", {"cf_pref": "稳健"}).content.decode()
    assert 'data-testid="cf-filter-pref"' in body and "共 1 位客户" in body and "客户进乙" not in body and "客户稳甲" in body
    assert "投资偏好：稳健" in body  # the chip


# --- the ingest pipeline (API rows, CRM sync) ----------------------------------------------------

def _row(i, **extra):
    return {"external_id": f"CF{i:04d}", "name": f"客户{i}", "branch": "BJ01", **extra}


def test_ingest_validates_merges_and_stays_idempotent(fields, advisor):
    rows = [_row(1, custom_fields={"pref": "稳健", "score": 10}),
            _row(2, **{"cf:pref": "进取", "cf:hobbies": "股票、基金", "cf:review": "20270102"}),
            _row(3, custom_fields={"pref": "稳健", "score": "101", "nope": 1}),
            _row(4, custom_fields="x"),
            _row(5, custom_fields={"score": 3})]  # a new customer without the required field
    result = customer_bulk_upsert(actor_label="t", rows=rows)
    assert (result["created"], result["invalid"]) == (2, 3)
    assert {(e["external_id"], e["field"], e["code"]) for e in result["errors"]} == {
        ("CF0003", "custom_fields.score", "out_of_range"), ("CF0003", "custom_fields.nope", "unknown_field"),
        ("CF0004", "custom_fields", "invalid_type"), ("CF0005", "custom_fields.pref", "required")}
    assert Customer.objects.get(external_id="CF0002").custom_fields == {
        "pref": "进取", "hobbies": ["基金", "股票"], "review": "2027-01-02"}
    assert not Customer.objects.filter(external_id__in=["CF0003", "CF0004", "CF0005"]).exists()
    # merged: values not given are kept; the same batch twice changes nothing
    update = [_row(1, custom_fields={"score": 11})]
    assert customer_bulk_upsert(actor_label="t", rows=update)["updated"] == 1
    assert customer_bulk_upsert(actor_label="t", rows=update)["unchanged"] == 1
    assert customer_bulk_upsert(actor_label="t", rows=[_row(1, custom_fields={"score": "11.0"})])["unchanged"] == 1
    assert Customer.objects.get(external_id="CF0001").custom_fields == {"pref": "稳健", "score": 11}
    # an existing customer may be updated without the required field
    assert customer_bulk_upsert(actor_label="t", rows=[_row(2, region="北京")])["updated"] == 1


# --- the file import ---------------------------------------------------------------------------

@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path


def _csv(header, rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def test_import_with_custom_columns_good_and_bad_rows(media, fields, advisor, operator):
    header = ["客户号", "姓名", "营业部", "投资偏好", "cf:score", "兴趣"]
    rows = [["I1", "甲", "BJ01", "稳健", "95", "基金|股票"],
            ["I2", "乙", "BJ01", "保守", "5", ""],
            ["I3", "丙", "BJ01", "平衡", "999", "债券"]]
    job = import_job_run(job_id=import_job_create(actor=operator, file=ContentFile(_csv(header, rows), name="c.csv"),
                                                  dry_run=False, enqueue=False).pk)
    assert (job.status, job.created_count, job.error_count) == ("done", 1, 2)
    assert Customer.objects.get(external_id="I1").custom_fields == {"pref": "稳健", "score": 95,
                                                                     "hobbies": ["基金", "股票"]}
    errors = {(e.row_number, e.column, e.value, e.reason) for e in ImportJobError.objects.filter(job=job)}
    assert errors == {(3, "投资偏好", "保守", "取值无效，可选：稳健/平衡/进取"), (4, "cf:score", "999", "应不大于 100")}


def test_import_header_refuses_unknown_and_deactivated_custom_columns(media, fields, operator, admin_user):
    services.custom_field_definition_set_active(actor=admin_user, definition=fields["note"], active=False)
    header = ["客户号", "姓名", "cf:nope", "cf:note"]
    job = import_job_run(job_id=import_job_create(actor=operator, file=ContentFile(_csv(header, [["X", "Y", "", ""]]),
                                                                                   name="c.csv"),
                                                  dry_run=False, enqueue=False).pk)
    assert job.status == "failed"
    assert {(e.column, e.reason) for e in ImportJobError.objects.filter(job=job)} == {
        ("cf:nope", "未知的自定义字段"), ("cf:note", "自定义字段已停用")}
    assert import_template_header()[-4:] == ["评分", "回访日期", "投资偏好", "兴趣"]


def test_value_cleaners_accept_spreadsheet_cells(fields):
    assert cf.custom_value_clean(fields["review"], date(2027, 5, 6)) == "2027-05-06"
    assert cf.custom_value_clean(fields["score"], 42.0) == 42
    assert cf.custom_value_clean(fields["note"], 12345.0) == "12345"
    assert cf.custom_value_clean(fields["pref"], "进取") == "进取"
    with pytest.raises(cf.CustomValueInvalid):
        cf.custom_value_clean(fields["score"], True)
