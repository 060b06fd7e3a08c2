"""Set-based customer upsert: validate rows as plain dicts, then write a whole batch in SQL.

Used by the file import (customers/imports.py) and the REST bulk endpoint; it knows nothing
about files or HTTP.

Row semantics (one dict per customer, keys = ``FIELDS``):

* ``external_id`` and ``name`` are required; ``branch`` is required when the customer is new.
* A key that is absent, ``None`` or blank means "not given": a new customer gets the model
  default, an existing one keeps its stored value. A batch never clears a field.
* ``birth_date`` (and ``gender``, when not given) are taken from the ID number when one is given.
* Each external_id may appear once per batch; later repeats are reported as errors.
* Custom field values (customers/custom_fields.py) come as a ``custom_fields`` object ``{code: value}`` (the API)
  or as flat ``cf:<code>`` keys (the file import's columns), validated against the field definitions; each
  rejected value is a row error on ``custom_fields.<code>`` / ``cf:<code>``. Given values are merged into the
  stored ones (``||``): values not given are kept, and blank or null is "not given" here too. A new customer
  must bring every required active field.

Writes: one multi-row INSERT into a session temp table, one row-lock SELECT, then ONE
``INSERT … ON CONFLICT (external_id) DO UPDATE … WHERE (…) IS DISTINCT FROM (…) RETURNING``.
Rows whose values are all equal to the stored ones are neither rewritten nor returned, so
created/updated/unchanged are exact, ``updated_at`` only moves on a real change, and sending
the same batch twice changes nothing the second time. Mobile and ID number are compared on
their blind-index hashes because Fernet ciphertexts differ on every encryption.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from collections.abc import Iterable
from decimal import Decimal

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core import crypto
from core.db import values_insert
from core.events import CustomersChanged, emit
from core.models import Branch, Role, User
from core.validators import (
    UNSTORABLE_MESSAGE,
    InvalidIdentifier,
    InvalidNumber,
    date_from_text,
    decimal_parse,
    external_id_normalize,
    id_number_birth_date,
    normalize_id_number,
    normalize_mobile,
    text_storable,
    validate_id_number,
    validate_mobile,
)
from customers import custom_fields
from customers.models import Customer, CustomFieldDefinition, FunnelStage, Gender, LifecycleStage, RiskLevel

logger = logging.getLogger(__name__)


class BulkErrorCode(enum.StrEnum):
    """Why a row was rejected (``code`` of each error)."""

    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_TYPE = "invalid_type"
    TOO_LONG = "too_long"
    INVALID_CHOICE = "invalid_choice"
    INVALID_DATE = "invalid_date"
    FUTURE_DATE = "future_date"
    INVALID_DECIMAL = "invalid_decimal"
    NEGATIVE = "negative"
    INVALID_MOBILE = "invalid_mobile"
    INVALID_ID_NUMBER = "invalid_id_number"
    BIRTH_DATE_MISMATCH = "birth_date_mismatch"
    UNKNOWN_BRANCH = "unknown_branch"
    BRANCH_REQUIRED = "branch_required"
    UNKNOWN_ADVISOR = "unknown_advisor"
    ADVISOR_BRANCH_MISMATCH = "advisor_branch_mismatch"
    DUPLICATE = "duplicate"
    INVALID_FORMAT = "invalid_format"
    OUT_OF_SCOPE = "out_of_scope"
    OUT_OF_RANGE = "out_of_range"  # custom fields: a number outside the field's min/max
    INACTIVE_FIELD = "inactive_field"  # custom fields: a value for a deactivated field


FIELDS = (
    "external_id", "name", "mobile", "id_number", "gender", "birth_date", "branch", "advisor",
    "risk_level", "risk_assessed_at", "opened_at", "channel", "utm_source", "utm_medium",
    "utm_campaign", "total_assets", "funnel_stage", "region", "occupation", "lifecycle_stage",
)
REQUIRED_FIELDS = ("external_id", "name")
PERSONAL_FIELDS = frozenset({"name", "mobile", "id_number", "birth_date"})

_MAX_LENGTH = {
    name: Customer._meta.get_field(name).max_length
    for name in ("external_id", "name", "region", "occupation", "channel", "utm_source", "utm_medium", "utm_campaign")
}
_DATE_FIELDS = ("birth_date", "risk_assessed_at", "opened_at")

# accepted spellings of each closed enum → stored value (matched case-insensitively)
_GENDERS = {"m": "M", "f": "F", "u": "U", "男": "M", "女": "F", "未知": "U", "male": "M", "female": "F"}


def _choice_map(choices) -> dict[str, str]:
    out = {}
    for value, label in choices.choices:
        out[value.lower()] = value
        out[str(label).lower()] = value
    return out


_RISK_LEVELS = {**_choice_map(RiskLevel), **{f"c{i}": f"C{i}" for i in range(1, 6)}}
_FUNNEL_STAGES = _choice_map(FunnelStage)
_LIFECYCLE_STAGES = _choice_map(LifecycleStage)
_ENUMS = {
    "gender": _GENDERS,
    "risk_level": _RISK_LEVELS,
    "funnel_stage": _FUNNEL_STAGES,
    "lifecycle_stage": _LIFECYCLE_STAGES,
}


class _Invalid(Exception):
    def __init__(self, code: BulkErrorCode, message: str):
        self.code = code
        self.message = message


# --- cleaning one value ----------------------------------------------------------------------

def _given(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _as_text(value, *, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _Invalid(BulkErrorCode.INVALID_TYPE, _("值的类型无效"))
    if isinstance(value, float):
        value = int(value) if value.is_integer() else value  # spreadsheets hand numbers over as floats
    text = str(value).strip()
    if not text_storable(text):
        raise _Invalid(BulkErrorCode.INVALID_TYPE, UNSTORABLE_MESSAGE)
    limit = _MAX_LENGTH.get(field)
    if limit and len(text) > limit:
        raise _Invalid(BulkErrorCode.TOO_LONG, _("最多 %(limit)d 个字符") % {"limit": limit})
    return text


def _as_date(value, *, today: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    elif not isinstance(value, dt.date):
        value = date_from_text(_as_text(value, field=""))
        if value is None:
            raise _Invalid(BulkErrorCode.INVALID_DATE, _("日期格式应为 YYYY-MM-DD"))
    if value.year < 1900:
        raise _Invalid(BulkErrorCode.INVALID_DATE, _("日期不能早于 1900 年"))
    if value > today:
        raise _Invalid(BulkErrorCode.FUTURE_DATE, _("日期不能晚于今天"))
    return value


def _as_decimal(value) -> Decimal:
    try:
        return decimal_parse(value, integer_digits=16)
    except InvalidNumber as exc:
        raise _Invalid(BulkErrorCode(exc.code), exc.message) from None


def _as_choice(value, *, field: str) -> str:
    text = _as_text(value, field=field)
    choice = _ENUMS[field].get(text.lower())
    if choice is None:
        allowed = {"gender": "M/F/U/男/女", "risk_level": "C1–C5",
                   "funnel_stage": "/".join(FunnelStage.values), "lifecycle_stage": "/".join(LifecycleStage.values)}[field]
        raise _Invalid(BulkErrorCode.INVALID_CHOICE, _("取值无效，可选：%(allowed)s") % {"allowed": allowed})
    return choice


def _as_mobile(value) -> str:
    mobile = normalize_mobile(_as_text(value, field="mobile"))
    try:
        validate_mobile(mobile)
    except Exception as exc:  # django ValidationError
        raise _Invalid(BulkErrorCode.INVALID_MOBILE, _first_message(exc)) from None
    return mobile


def _as_id_number(value) -> str:
    id_number = normalize_id_number(_as_text(value, field="id_number"))
    try:
        validate_id_number(id_number)
    except Exception as exc:  # django ValidationError
        raise _Invalid(BulkErrorCode.INVALID_ID_NUMBER, _first_message(exc)) from None
    return id_number


def _first_message(exc) -> str:
    messages = getattr(exc, "messages", None)
    return str(messages[0]) if messages else str(exc)


def _as_external_id(value) -> str:
    try:
        return external_id_normalize(value)
    except InvalidIdentifier as exc:
        raise _Invalid(BulkErrorCode(exc.code), exc.message) from None


def _clean_value(field: str, value, *, today: dt.date):
    if field == "external_id":
        return _as_external_id(value)
    if field in _ENUMS:
        return _as_choice(value, field=field)
    if field in _DATE_FIELDS:
        return _as_date(value, today=today)
    if field == "total_assets":
        return _as_decimal(value)
    if field == "mobile":
        return _as_mobile(value)
    if field == "id_number":
        return _as_id_number(value)
    return _as_text(value, field=field)


# --- validating a batch ----------------------------------------------------------------------

def _error(index: int, external_id: str, field: str, code: BulkErrorCode, message: str) -> dict:
    return {"index": index, "external_id": external_id, "field": field, "code": str(code), "message": message}


def customer_rows_validate(rows: Iterable[dict], *, start_index: int = 0) -> tuple[list[dict], list[dict]]:
    """Check rows without writing anything.

    Returns ``(valid_rows, errors)``: each valid row is a dict of cleaned values (``index``,
    ``external_id``, ``branch_id``, ``advisor_id`` …, only the fields that were given), ready
    for the upsert; each error is ``{"index", "external_id", "field", "code", "message"}`` where
    ``index`` counts from ``start_index``. A row with any error is not in ``valid_rows``.
    Looks branches, advisors and (for rows without a branch) existing customers up with one
    query each.
    """
    rows = list(rows)
    errors: list[dict] = []
    checked: list[dict] = []
    today = timezone.localdate()  # Asia/Shanghai: dates in the future are rejected
    definitions = None  # custom field definitions, read once, when a row brings custom values
    for offset, row in enumerate(rows):
        index = start_index + offset
        if not isinstance(row, dict):
            errors.append(_error(index, "", "", BulkErrorCode.INVALID_TYPE, _("每一行应为一个对象")))
            continue
        clean = _row_clean(row, index, today=today)
        if _custom_keys(row):
            if definitions is None:
                definitions = custom_fields.definitions_by_code()
            _custom_clean(row, clean, definitions)
        checked.append(clean)
    _resolve_references(checked)
    _mark_duplicates(checked)
    valid = []
    for clean in checked:
        row_errors = clean.pop("_errors")
        clean.pop("_external_id")
        if row_errors:
            errors.extend(row_errors)
        else:
            valid.append(clean)
    errors.sort(key=lambda e: e["index"])
    return valid, errors


def _row_clean(row: dict, index: int, *, today: dt.date) -> dict:
    """Cleaned values of one row, with its field errors under ``_errors``."""
    raw_id = row.get("external_id")
    external_id = str(raw_id).strip()[:64] if _given(raw_id) and not isinstance(raw_id, dict | list) else ""  # to echo
    clean: dict = {"index": index, "_external_id": external_id, "_errors": []}
    row_errors = clean["_errors"]
    custom_keys = _custom_keys(row)
    for key in row:
        if key not in FIELDS and key not in custom_keys:
            row_errors.append(_error(index, external_id, str(key), BulkErrorCode.UNKNOWN_FIELD, _("未知字段")))
    for field in FIELDS:
        value = row.get(field)
        if not _given(value):
            if field in REQUIRED_FIELDS:
                row_errors.append(_error(index, external_id, field, BulkErrorCode.REQUIRED, _("必填")))
            continue
        try:
            clean[field] = _clean_value(field, value, today=today)
        except _Invalid as exc:
            row_errors.append(_error(index, external_id, field, exc.code, exc.message))
    if "id_number" in clean:
        born = id_number_birth_date(clean["id_number"])
        if "birth_date" in clean and clean["birth_date"] != born:
            row_errors.append(_error(index, external_id, "birth_date", BulkErrorCode.BIRTH_DATE_MISMATCH,
                                     _("出生日期与身份证号不一致")))
        clean.setdefault("birth_date", born)
        clean.setdefault("gender", Gender.MALE.value if int(clean["id_number"][16]) % 2 else Gender.FEMALE.value)
    return clean


def _custom_keys(row: dict) -> list:
    """The keys of ``row`` that carry custom field values: ``custom_fields`` and ``cf:<code>``."""
    return [key for key in row if key == "custom_fields"
            or (isinstance(key, str) and key.startswith(custom_fields.COLUMN_PREFIX))]


def _custom_clean(row: dict, clean: dict, definitions: dict) -> None:
    """Validate the row's custom values into ``clean["custom_fields"]`` (only those given), errors to ``_errors``."""
    index, external_id, row_errors = clean["index"], clean["_external_id"], clean["_errors"]
    entries = []
    given = row.get("custom_fields")
    if given is not None and not isinstance(given, dict):
        row_errors.append(_error(index, external_id, "custom_fields", BulkErrorCode.INVALID_TYPE,
                                 _("应为 {代码: 值} 的对象")))
    elif given:
        entries += [(f"custom_fields.{code}", code, raw) for code, raw in given.items()]
        clean["_custom_key"] = "custom_fields."
    columns = [key for key in row if key != "custom_fields" and key in _custom_keys(row)]
    entries += [(key, key[len(custom_fields.COLUMN_PREFIX):], row[key]) for key in columns]
    if columns:
        clean["_custom_key"] = custom_fields.COLUMN_PREFIX
    values, problems = custom_fields.custom_values_clean(entries, definitions=definitions)
    for key, code, message in problems:
        row_errors.append(_error(index, external_id, key, code, message))
    if values:
        clean["custom_fields"] = values


def _resolve_references(rows: list[dict]) -> None:
    """Branch code → id, advisor employee code → id (same branch), branch of existing customers."""
    branch_codes = {r["branch"] for r in rows if "branch" in r}
    advisor_codes = {r["advisor"] for r in rows if "advisor" in r}
    branches = dict(Branch.objects.filter(code__in=branch_codes).values_list("code", "id")) if branch_codes else {}
    advisors = {
        code: (pk, branch_id)
        # advisors only: a client given to a manager's employee code would follow that person's later role and branch
        for code, pk, branch_id in User.objects.filter(employee_code__in=advisor_codes, is_active=True,
                                                       role=Role.ADVISOR)
        .values_list("employee_code", "id", "branch_id")
    } if advisor_codes else {}
    without_branch = [r["external_id"] for r in rows if "branch" not in r and "external_id" in r]
    existing_branch = dict(
        Customer.objects.filter(external_id__in=without_branch).values_list("external_id", "branch_id")
    ) if without_branch else {}

    for row in rows:
        index, external_id, row_errors = row["index"], row["_external_id"], row["_errors"]
        if "branch" in row:
            branch_id = branches.get(row["branch"])
            if branch_id is None:
                row_errors.append(_error(index, external_id, "branch", BulkErrorCode.UNKNOWN_BRANCH, _("营业部代码不存在")))
            row["branch_id"] = branch_id
        else:
            branch_id = existing_branch.get(row.get("external_id"))
            if branch_id is None and "external_id" in row:
                row_errors.append(_error(index, external_id, "branch", BulkErrorCode.BRANCH_REQUIRED,
                                         _("新客户必须填写营业部")))
        if "advisor" in row:
            advisor = advisors.get(row["advisor"])
            if advisor is None:
                row_errors.append(_error(index, external_id, "advisor", BulkErrorCode.UNKNOWN_ADVISOR, _("投顾工号不存在")))
            elif branch_id is not None and advisor[1] != branch_id:
                row_errors.append(_error(index, external_id, "advisor", BulkErrorCode.ADVISOR_BRANCH_MISMATCH,
                                         _("投顾不属于该营业部")))
            else:
                row["advisor_id"] = advisor[0]


def _mark_duplicates(rows: list[dict]) -> None:
    """A second valid row with the same external_id in one batch is an error (the upsert needs unique keys)."""
    seen: set[str] = set()
    for row in rows:
        if row["_errors"]:
            continue
        if row["external_id"] in seen:
            row["_errors"].append(_error(row["index"], row["external_id"], "external_id", BulkErrorCode.DUPLICATE,
                                         _("客户号在同一批数据中重复")))
        seen.add(row["external_id"])


# --- writing a batch -------------------------------------------------------------------------

# staged column, SQL type, default for a new customer (None = NULL)
_COLUMNS = (
    ("name", "varchar(50)", None),
    ("gender", "varchar(1)", Gender.UNKNOWN.value),
    ("birth_date", "date", None),
    ("region", "varchar(50)", ""),
    ("occupation", "varchar(50)", ""),
    ("branch_id", "bigint", None),
    ("advisor_id", "bigint", None),
    ("opened_at", "date", None),
    ("channel", "varchar(50)", ""),
    ("utm_source", "varchar(100)", ""),
    ("utm_medium", "varchar(100)", ""),
    ("utm_campaign", "varchar(100)", ""),
    ("funnel_stage", "varchar(20)", FunnelStage.ID_UPLOADED.value),
    ("risk_level", "varchar(2)", ""),
    ("risk_assessed_at", "date", None),
    ("total_assets", "numeric(18,2)", Decimal("0.00")),
    ("lifecycle_stage", "varchar(10)", LifecycleStage.ACQUIRE.value),
    ("mobile_encrypted", "text", ""),
    ("mobile_hash", "varchar(64)", ""),
    ("mobile_masked", "varchar(16)", ""),
    ("id_number_encrypted", "text", ""),
    ("id_number_hash", "varchar(64)", ""),
    ("id_number_masked", "varchar(24)", ""),
    ("custom_fields", "jsonb", None),  # merged into the stored values, not put in their place (_proposed_sql)
)
_COLUMN_NAMES = [name for name, _type, _default in _COLUMNS]
# compared to decide "changed": everything but ciphertexts, which differ on every encryption
_COMPARED = [name for name in _COLUMN_NAMES if not name.endswith("_encrypted")]
_STAGE = "customer_bulk_stage"
_TABLE = Customer._meta.db_table

_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (external_id varchar(64) NOT NULL, "
    + ", ".join(f"{name} {sql_type}" for name, sql_type, _default in _COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


def _proposed_sql() -> tuple[str, list]:
    """The row each staged customer would end up as: given values over stored ones over defaults."""
    params: list = []
    exprs = []
    for name, _sql_type, default in _COLUMNS:
        if name == "custom_fields":
            exprs.append("COALESCE(c.custom_fields, '{}'::jsonb) || COALESCE(s.custom_fields, '{}'::jsonb) "
                         "AS custom_fields")
        elif default is None:
            exprs.append(f"COALESCE(s.{name}, c.{name}) AS {name}")
        else:
            exprs.append(f"COALESCE(s.{name}, c.{name}, %s) AS {name}")
            params.append(default)
    sql = (
        f"SELECT s.external_id, {', '.join(exprs)}, c.id AS existing_id FROM {_STAGE} s "
        f"LEFT JOIN {_TABLE} c ON c.external_id = s.external_id"
    )
    return sql, params


def _stage_tuple(row: dict) -> tuple:
    mobile = row.get("mobile")
    id_number = row.get("id_number")
    values = {
        **{name: row.get(name) for name in _COLUMN_NAMES},
        "mobile_encrypted": crypto.encrypt(mobile) if mobile else None,
        "mobile_hash": crypto.blind_index(mobile) if mobile else None,
        "mobile_masked": crypto.mask_mobile(mobile) if mobile else None,
        "id_number_encrypted": crypto.encrypt(id_number) if id_number else None,
        "id_number_hash": crypto.blind_index(id_number) if id_number else None,
        "id_number_masked": crypto.mask_id_number(id_number) if id_number else None,
        "custom_fields": json.dumps(row["custom_fields"], ensure_ascii=False) if row.get("custom_fields") else None,
    }
    return (row["external_id"], *(values[name] for name in _COLUMN_NAMES))


def _stage(cursor, rows: list[dict]) -> None:
    cursor.execute(_STAGE_DDL)
    cursor.execute(f"TRUNCATE {_STAGE}")
    template = "(" + ", ".join(["%s"] + ["%s::jsonb" if n == "custom_fields" else "%s" for n in _COLUMN_NAMES]) + ")"
    values_insert(cursor, f"INSERT INTO {_STAGE} (external_id, {', '.join(_COLUMN_NAMES)}) VALUES %s",
                  [_stage_tuple(r) for r in rows], template=template)


def retryable(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the transaction lost a race and may simply run again."""
    cause = exc.__cause__
    return (getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)) in ("40P01", "40001")


def _write(valid: list[dict], *, dry_run: bool, branch_id: int | None) -> tuple[list[dict], list[dict], int, int]:
    """Stage, lock, scope-check and upsert (or count, on a dry run): (rows kept, scope errors, created, updated)."""
    refused: list[dict] = []
    with connection.cursor() as cursor:
        _stage(cursor, valid)
        if not dry_run:
            _lock_keys(cursor)
        if branch_id is not None:
            refused = _scope_check(cursor, valid, branch_id)
        refused += _required_custom_check(cursor, valid)
        if refused:
            refused_ids = {e["external_id"] for e in refused}
            valid = [r for r in valid if r["external_id"] not in refused_ids]
        if dry_run:
            created, updated = _would_change(cursor)
        else:
            created_ids, updated_ids = _upsert(cursor, branch_id)
            created, updated = len(created_ids), len(updated_ids)
            if created_ids or updated_ids:
                emit(CustomersChanged(created_ids=tuple(created_ids), updated_ids=tuple(updated_ids)))
        cursor.execute(f"TRUNCATE {_STAGE}")  # personal data (encrypted) does not outlive the call
    return valid, refused, created, updated


_KEY_LOCK_CLASS = 0x6375  # "cu": pg_advisory_xact_lock(class, hashtext(external_id)) for customer keys


def _lock_keys(cursor) -> None:
    """Take every key of the batch, existing or new, in one global order (by hash) before writing, so concurrent
    overlapping batches queue instead of deadlocking: an existing row and a key another batch is inserting right now
    are covered alike. Then lock the existing rows so the values kept for fields not given are the latest ones."""
    cursor.execute(
        f"SELECT count(pg_advisory_xact_lock(%s, k)) FROM (SELECT DISTINCT hashtext(external_id) AS k "
        f"FROM {_STAGE} ORDER BY 1) keys", [_KEY_LOCK_CLASS])
    cursor.execute(f"SELECT 1 FROM {_TABLE} WHERE external_id IN (SELECT external_id FROM {_STAGE}) "
                   "ORDER BY external_id FOR UPDATE")


def _scope_check(cursor, rows: list[dict], branch_id: int) -> list[dict]:
    """Errors for staged rows a caller limited to ``branch_id`` may not write (a customer stored in another
    branch, or a row naming another branch), which are taken off the stage. Runs after the existing rows are
    locked, on the identifiers exactly as staged."""
    cursor.execute(
        f"SELECT s.external_id, c.id IS NOT NULL AND c.branch_id IS DISTINCT FROM %s AS elsewhere FROM {_STAGE} s "
        f"LEFT JOIN {_TABLE} c ON c.external_id = s.external_id "
        "WHERE (c.id IS NOT NULL AND c.branch_id IS DISTINCT FROM %s) OR s.branch_id <> %s",
        [branch_id, branch_id, branch_id],
    )
    refused = dict(cursor.fetchall())
    if not refused:
        return []
    cursor.execute(f"DELETE FROM {_STAGE} WHERE external_id = ANY(%s)", [list(refused)])
    errors = []
    for row in rows:
        if row["external_id"] in refused:
            if refused[row["external_id"]]:
                errors.append(_error(row["index"], row["external_id"], "external_id", BulkErrorCode.OUT_OF_SCOPE,
                                     _("该客户不属于本客户端的营业部")))
            else:
                errors.append(_error(row["index"], row["external_id"], "branch", BulkErrorCode.OUT_OF_SCOPE,
                                     _("只能写入本客户端所属营业部的客户")))
    return errors


def _required_custom_check(cursor, rows: list[dict]) -> list[dict]:
    """Errors for staged NEW customers without a value of a required active custom field (an existing customer
    keeps what it has: a batch never clears), which are taken off the stage. After the keys are locked, so "new"
    cannot change under us."""
    required = list(CustomFieldDefinition.objects.filter(active=True, required=True).order_by("order", "id")
                    .values_list("code", flat=True))
    if not required:
        return []
    cursor.execute(
        f"SELECT s.external_id, array_agg(r.code ORDER BY r.n) FROM {_STAGE} s "
        f"LEFT JOIN {_TABLE} c ON c.external_id = s.external_id "
        "CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS r(code, n) "
        "WHERE c.id IS NULL AND NOT jsonb_exists(COALESCE(s.custom_fields, '{}'::jsonb), r.code) "
        "GROUP BY s.external_id", [required])
    missing = dict(cursor.fetchall())
    if not missing:
        return []
    cursor.execute(f"DELETE FROM {_STAGE} WHERE external_id = ANY(%s)", [list(missing)])
    errors = []
    for row in rows:
        for code in missing.get(row["external_id"], ()):
            key = row.get("_custom_key", "custom_fields.")
            errors.append(_error(row["index"], row["external_id"], f"{key}{code}", BulkErrorCode.REQUIRED,
                                 _("新客户必须填写该自定义字段")))
    return errors


def _upsert(cursor, branch_id: int | None = None) -> tuple[list[int], list[int]]:
    """The one writing statement. With ``branch_id`` it inserts and updates only customers of that branch
    that stay in it, whatever was checked before."""
    proposed, params = _proposed_sql()
    columns = ", ".join(_COLUMN_NAMES)
    assignments = []
    for name in _COLUMN_NAMES:
        if name.endswith("_encrypted"):
            hash_column = name.replace("_encrypted", "_hash")
            assignments.append(
                f"{name} = CASE WHEN t.{hash_column} = EXCLUDED.{hash_column} THEN t.{name} ELSE EXCLUDED.{name} END"
            )
        else:
            assignments.append(f"{name} = EXCLUDED.{name}")
    assignments.append("updated_at = now()")
    stored = ", ".join(f"t.{name}" for name in _COMPARED)
    incoming = ", ".join(f"EXCLUDED.{name}" for name in _COMPARED)
    insert_guard = update_guard = ""
    if branch_id is not None:
        insert_guard = "WHERE p.branch_id = %s "
        update_guard = "t.branch_id = %s AND EXCLUDED.branch_id = %s AND "
        params = [*params, branch_id, branch_id, branch_id]
    sql = (
        f"INSERT INTO {_TABLE} AS t (external_id, {columns}) "
        f"SELECT external_id, {columns} FROM ({proposed}) p {insert_guard}ORDER BY external_id "
        f"ON CONFLICT (external_id) DO UPDATE SET {', '.join(assignments)} "
        f"WHERE {update_guard}({stored}) IS DISTINCT FROM ({incoming}) "
        "RETURNING id, (xmax = 0) AS created"
    )
    cursor.execute(sql, params)
    created_ids, updated_ids = [], []
    for pk, created in cursor.fetchall():
        (created_ids if created else updated_ids).append(pk)
    return created_ids, updated_ids


def _would_change(cursor) -> tuple[int, int]:
    """Dry run: the same proposed rows, counted against the stored ones without writing."""
    proposed, params = _proposed_sql()
    stored = ", ".join(f"c.{name}" for name in _COMPARED)
    incoming = ", ".join(f"p.{name}" for name in _COMPARED)
    cursor.execute(
        f"SELECT count(*) FILTER (WHERE p.existing_id IS NULL), "
        f"count(*) FILTER (WHERE p.existing_id IS NOT NULL AND ({stored}) IS DISTINCT FROM ({incoming})) "
        f"FROM ({proposed}) p LEFT JOIN {_TABLE} c ON c.id = p.existing_id",
        params,
    )
    created, updated = cursor.fetchone()
    return created, updated


@transaction.atomic
def customer_bulk_upsert(
    *, actor_label: str, rows: list[dict], dry_run: bool = False, actor=None, audit: bool = True,
    branch_id: int | None = None,
) -> dict:
    """Validate and upsert a batch of customers by ``external_id``; idempotent.

    Returns ``{"created", "updated", "unchanged", "invalid", "errors"}`` (``invalid`` = rows
    rejected; ``errors`` as in :func:`customer_rows_validate`). Invalid rows change nothing;
    the valid rows of the same batch are saved. With ``dry_run`` nothing is written and the
    counts say what would happen. One audit row per call unless ``audit`` is False (the file
    import audits once per file instead). With ``branch_id`` (a branch-scoped API client) a
    customer stored in another branch, or a row naming another branch, is a row error, and the
    writing statement itself can neither move a customer out of that branch nor into it.
    """
    from core.services import audit_record

    valid, errors = customer_rows_validate(rows)
    created = updated = 0
    if valid:
        for attempt in (1, 2):
            try:
                with transaction.atomic():  # a savepoint: a deadlock or serialization failure undoes this attempt only
                    valid, refused, created, updated = _write(valid, dry_run=dry_run, branch_id=branch_id)
                break
            except OperationalError as exc:
                if attempt == 2 or not retryable(exc):
                    raise
                logger.warning("customer bulk upsert: %s, retrying once", type(exc.__cause__).__name__)
        errors = sorted([*errors, *refused], key=lambda e: e["index"])
    result = {
        "created": created,
        "updated": updated,
        "unchanged": len(valid) - created - updated,
        "invalid": len({e["index"] for e in errors}),
        "errors": errors,
    }
    if audit and not dry_run:
        audit_record(
            actor=actor, actor_label=actor_label, action="customer.bulk_upsert", target_type="customer",
            details={k: result[k] for k in ("created", "updated", "unchanged", "invalid")},
        )
    return result
