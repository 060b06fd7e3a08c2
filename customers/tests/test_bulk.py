"""customer_rows_validate / customer_bulk_upsert: validation per field, exact counting, idempotency."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.crypto import blind_index, decrypt
from core.models import AuditLog
from core.validators import id_number_check_digit
from customers.ingest import customer_bulk_upsert, customer_rows_validate
from customers.models import Customer

pytestmark = pytest.mark.django_db


def id_number(birth: str = "19900307", seq: str = "123") -> str:
    first17 = f"110105{birth}{seq}"
    return first17 + id_number_check_digit(first17)


def row(external_id="C001", **fields) -> dict:
    return {"external_id": external_id, "name": "张三", "branch": "BJ01", **fields}


def upsert(rows, **kwargs):
    return customer_bulk_upsert(actor_label="test", rows=rows, **kwargs)


@pytest.fixture
def staff(advisor, other_branch_advisor):
    """BJ01 with advisor E9001, SH01 with advisor E9002."""
    return advisor, other_branch_advisor


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("mobile", "12345678901", "invalid_mobile"),
        ("mobile", "1380013800", "invalid_mobile"),
        ("mobile", "abc", "invalid_mobile"),
        ("id_number", id_number()[:-1] + ("0" if id_number()[-1] != "0" else "1"), "invalid_id_number"),
        ("id_number", "110105199002301234", "invalid_id_number"),  # 30 February
        ("id_number", "11010519900307", "invalid_id_number"),
        ("gender", "X", "invalid_choice"),
        ("risk_level", "C6", "invalid_choice"),
        ("funnel_stage", "signed_up", "invalid_choice"),
        ("lifecycle_stage", "sleeping", "invalid_choice"),
        ("birth_date", "1990-13-01", "invalid_date"),
        ("birth_date", "yesterday", "invalid_date"),
        ("opened_at", (dt.date.today() + dt.timedelta(days=2)).isoformat(), "future_date"),
        ("risk_assessed_at", "1899-12-31", "invalid_date"),
        ("total_assets", "-0.01", "negative"),
        ("total_assets", "lots", "invalid_decimal"),
        ("total_assets", "1e20", "invalid_decimal"),
        ("branch", "NOPE", "unknown_branch"),
        ("advisor", "E0000", "unknown_advisor"),
        ("advisor", "E9002", "advisor_branch_mismatch"),
        ("name", "张" * 51, "too_long"),
        ("external_id", "x" * 65, "too_long"),
        ("channel", {"a": 1}, "invalid_type"),
    ],
)
def test_invalid_value_is_reported_with_field_and_code(staff, field, value, code):
    valid, errors = customer_rows_validate([row(**{field: value})], start_index=7)
    assert valid == []
    assert [(e["index"], e["field"], e["code"]) for e in errors] == [(7, field, code)]
    assert errors[0]["message"]


def test_only_an_advisor_can_be_a_clients_advisor(staff, make_staff):
    """A manager's employee code is not an advisor's: the client would follow that person's later role and branch."""
    make_staff("bm_codes", "branch_manager", "BJ01", employee_code="PT001")
    valid, errors = customer_rows_validate([row(advisor="PT001")], start_index=0)
    assert valid == [] and [(e["field"], e["code"]) for e in errors] == [("advisor", "unknown_advisor")]


def test_check_digit_error_says_so(staff):
    bad = id_number()[:-1] + ("0" if id_number()[-1] != "0" else "1")
    _valid, errors = customer_rows_validate([row(id_number=bad)])
    assert errors[0]["message"] == "身份证号校验位错误"


@pytest.mark.parametrize("field", ["external_id", "name"])
def test_required_fields(staff, field):
    data = row()
    data[field] = "  "
    valid, errors = customer_rows_validate([data])
    assert valid == []
    assert [(e["field"], e["code"]) for e in errors] == [(field, "required")]


def test_unknown_fields_are_errors_naming_the_field(staff):
    valid, errors = customer_rows_validate([row(email="a@b.c", wechat="x")])
    assert valid == []
    assert sorted((e["field"], e["code"], e["message"]) for e in errors) == [
        ("email", "unknown_field", "未知字段"), ("wechat", "unknown_field", "未知字段"),
    ]


def test_birth_date_must_agree_with_id_number(staff):
    _valid, errors = customer_rows_validate([row(id_number=id_number("19900307"), birth_date="1990-03-08")])
    assert [(e["field"], e["code"]) for e in errors] == [("birth_date", "birth_date_mismatch")]
    valid, errors = customer_rows_validate([row(id_number=id_number("19900307"), birth_date="1990/3/7")])
    assert errors == [] and valid[0]["birth_date"] == dt.date(1990, 3, 7)


def test_accepted_spellings_are_normalised(staff):
    valid, errors = customer_rows_validate([row(
        gender="女", risk_level="c4", funnel_stage="开户完成", lifecycle_stage="Retain", mobile="+86 138-0013-8000",
        opened_at=dt.datetime(2021, 5, 6, 0, 0), risk_assessed_at="20240102", total_assets="￥1,234.567",
        id_number=id_number().lower(), advisor="E9001",
    )])
    assert errors == []
    clean = valid[0]
    enums = (clean["gender"], clean["risk_level"], clean["funnel_stage"], clean["lifecycle_stage"])
    assert enums == ("F", "C4", "opened", "retain")
    assert clean["mobile"] == "13800138000"
    assert clean["opened_at"] == dt.date(2021, 5, 6) and clean["risk_assessed_at"] == dt.date(2024, 1, 2)
    assert clean["total_assets"] == Decimal("1234.57")
    assert clean["birth_date"] == dt.date(1990, 3, 7)


def test_gender_is_taken_from_the_id_number_only_when_not_given(staff):
    male = id_number(seq="013")  # 17th digit odd
    valid, _errors = customer_rows_validate([row("A", id_number=male), row("B", id_number=male, gender="U")])
    assert [r["gender"] for r in valid] == ["M", "U"]


def test_new_customer_needs_a_branch_existing_one_keeps_its_own(staff):
    data = row()
    del data["branch"]
    _valid, errors = customer_rows_validate([data])
    assert [(e["field"], e["code"]) for e in errors] == [("branch", "branch_required")]
    upsert([row(advisor="E9001")])
    result = upsert([{"external_id": "C001", "name": "张三丰", "advisor": "E9001"}])
    assert (result["updated"], result["errors"]) == (1, [])
    result = upsert([{"external_id": "C001", "name": "张三丰", "advisor": "E9002"}])  # SH01 advisor, BJ01 customer
    assert [e["code"] for e in result["errors"]] == ["advisor_branch_mismatch"]


def test_duplicate_external_id_in_one_batch_is_rejected(staff):
    result = upsert([row("D1"), row("D2"), row("D1", name="李四")])
    assert result["created"] == 2
    assert [(e["index"], e["field"], e["code"]) for e in result["errors"]] == [(2, "external_id", "duplicate")]
    assert Customer.objects.get(external_id="D1").name == "张三"


# --- writing ---------------------------------------------------------------------------------

def test_created_updated_unchanged_are_counted_exactly(staff):
    first = upsert([row("A"), row("B"), row("C")])
    assert {k: first[k] for k in ("created", "updated", "unchanged", "invalid")} == \
        {"created": 3, "updated": 0, "unchanged": 0, "invalid": 0}
    second = upsert([row("A"), row("B", risk_level="C2"), row("C", total_assets="10"), row("D")])
    assert (second["created"], second["updated"], second["unchanged"]) == (1, 2, 1)
    assert Customer.objects.get(external_id="B").risk_level == "C2"
    assert Customer.objects.get(external_id="C").total_assets == Decimal("10.00")


def test_sending_the_same_rows_twice_changes_nothing_the_second_time(staff):
    rows = [row(f"I{i}", mobile=f"1380013800{i}", id_number=id_number(seq=f"12{i}"), advisor="E9001", risk_level="C3",
                total_assets="99.5", region="北京", opened_at="2020-01-01") for i in range(5)]
    assert upsert(rows)["created"] == 5
    before = {c.external_id: (c.updated_at, c.mobile_encrypted, c.id_number_encrypted) for c in Customer.objects.all()}
    result = upsert(rows)
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 0, 5)
    after = {c.external_id: (c.updated_at, c.mobile_encrypted, c.id_number_encrypted) for c in Customer.objects.all()}
    assert after == before


def test_updated_at_moves_only_on_a_real_change(staff):
    upsert([row("U1"), row("U2")])
    Customer.objects.update(updated_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    result = upsert([row("U1", occupation="教师"), row("U2")])
    assert (result["updated"], result["unchanged"]) == (1, 1)
    assert Customer.objects.get(external_id="U1").updated_at.year > 2020
    assert Customer.objects.get(external_id="U2").updated_at.year == 2020


def test_an_invalid_row_changes_nothing_while_valid_rows_are_saved(staff):
    upsert([row("K1", risk_level="C2", name="王五")])
    result = upsert([row("K1", risk_level="C9", name="王六"), row("K2"), row("K3", mobile="999")])
    assert (result["created"], result["updated"], result["invalid"]) == (1, 0, 2)
    assert sorted((e["external_id"], e["field"]) for e in result["errors"]) == [("K1", "risk_level"), ("K3", "mobile")]
    k1 = Customer.objects.get(external_id="K1")
    assert (k1.risk_level, k1.name) == ("C2", "王五")
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"K1", "K2"}


def test_personal_data_is_encrypted_hashed_and_masked(staff):
    number = id_number(seq="456")
    upsert([row("P1", mobile="13912345678", id_number=number)])
    c = Customer.objects.get(external_id="P1")
    assert "13912345678" not in c.mobile_encrypted and number not in c.id_number_encrypted
    assert decrypt(c.mobile_encrypted) == "13912345678"
    assert decrypt(c.id_number_encrypted) == number
    assert c.mobile_hash == blind_index("13912345678") and c.id_number_hash == blind_index(number)
    assert c.mobile_masked == "139****5678"
    assert c.id_number_masked == "*" * 14 + number[-4:]
    assert c.birth_date == dt.date(1990, 3, 7)


def test_same_mobile_again_is_unchanged_a_new_one_is_an_update(staff):
    upsert([row("M1", mobile="13912345678")])
    stored = Customer.objects.get(external_id="M1").mobile_encrypted
    assert upsert([row("M1", mobile="139 1234 5678")])["unchanged"] == 1
    assert upsert([row("M1", mobile="13912345678", occupation="医生")])["updated"] == 1
    assert Customer.objects.get(external_id="M1").mobile_encrypted == stored  # same number keeps its ciphertext
    assert upsert([row("M1", mobile="13700000000")])["updated"] == 1
    c = Customer.objects.get(external_id="M1")
    assert (decrypt(c.mobile_encrypted), c.mobile_masked) == ("13700000000", "137****0000")


def test_fields_not_given_keep_their_stored_values(staff):
    upsert([row("F1", mobile="13912345678", risk_level="C4", total_assets="5", advisor="E9001", gender="M")])
    result = upsert([{"external_id": "F1", "name": "张三", "region": "上海", "mobile": "", "risk_level": None}])
    assert result["updated"] == 1
    c = Customer.objects.get(external_id="F1")
    kept = (c.region, c.risk_level, c.total_assets, c.gender, c.advisor.employee_code)
    assert kept == ("上海", "C4", Decimal("5.00"), "M", "E9001")
    assert decrypt(c.mobile_encrypted) == "13912345678"


def test_new_customers_get_model_defaults(staff):
    upsert([row("N1")])
    c = Customer.objects.get(external_id="N1")
    assert (c.gender, c.funnel_stage, c.lifecycle_stage, c.total_assets, c.risk_level, c.mobile_masked) == \
        ("U", "id_uploaded", "acquire", Decimal("0.00"), "", "")


def test_total_assets_zero_is_a_real_value(staff):
    upsert([row("Z1", total_assets="100")])
    assert upsert([row("Z1", total_assets="0")])["updated"] == 1
    assert Customer.objects.get(external_id="Z1").total_assets == Decimal("0.00")


def test_dry_run_counts_without_writing(staff):
    upsert([row("R1"), row("R2")])
    result = upsert([row("R1"), row("R2", region="深圳"), row("R3"), row("R4", gender="?")], dry_run=True)
    assert (result["created"], result["updated"], result["unchanged"], result["invalid"]) == (1, 1, 1, 1)
    assert Customer.objects.count() == 2
    assert Customer.objects.get(external_id="R2").region == ""


def test_each_call_is_audited_with_counts(staff):
    upsert([row("AU1"), row("AU2", risk_level="bad")])
    log = AuditLog.objects.get(action="customer.bulk_upsert")
    assert log.actor_label == "test"
    assert log.details == {"created": 1, "updated": 0, "unchanged": 0, "invalid": 1}


def test_the_write_is_set_based(staff):
    """The number of statements does not depend on the number of rows; no per-row save()."""
    def statements(n, prefix):
        rows = [row(f"{prefix}{i}", mobile=f"139{i:08d}", advisor="E9001") for i in range(n)]
        with CaptureQueriesContext(connection) as ctx:
            result = upsert(rows)
        assert result["created"] == n
        return [q["sql"] for q in ctx.captured_queries]

    small, large = statements(3, "S"), statements(300, "L")
    assert len(small) == len(large)
    upserts = [sql for sql in large if sql.startswith("INSERT INTO customers_customer")]
    assert len(upserts) == 1 and "ON CONFLICT (external_id) DO UPDATE" in upserts[0] and "IS DISTINCT FROM" in upserts[0]
    assert Customer.objects.filter(external_id__startswith="L").count() == 300
