"""Row validation shared by the ingest writers: every value another system sends is cleaned by one function per
kind (identifiers, text, aware datetimes, amounts), and every rejected value becomes a row error
``{"index", "external_id", "field", "code", "message"}``."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from core.validators import (
    UNSTORABLE_MESSAGE,
    InvalidIdentifier,
    InvalidNumber,
    decimal_parse,
    external_id_normalize,
    text_storable,
    utc_offset_valid,
)


class IngestErrorCode(enum.StrEnum):
    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_TYPE = "invalid_type"
    TOO_LONG = "too_long"
    INVALID_CHOICE = "invalid_choice"
    INVALID_DATETIME = "invalid_datetime"
    NAIVE_DATETIME = "naive_datetime"
    INVALID_DECIMAL = "invalid_decimal"
    NOT_POSITIVE = "not_positive"
    NEGATIVE = "negative"
    UNKNOWN_CUSTOMER = "unknown_customer"
    UNKNOWN_PRODUCT = "unknown_product"
    DUPLICATE = "duplicate"
    OUT_OF_SCOPE = "out_of_scope"
    INVALID_FORMAT = "invalid_format"


E = IngestErrorCode
_FUTURE_SLACK = timedelta(days=1)


class _Invalid(Exception):
    def __init__(self, code: IngestErrorCode, message: str):
        self.code, self.message = code, message


def _error(index: int, key: str, field: str, code, message: str) -> dict:
    return {"index": index, "external_id": key, "field": field, "code": str(code), "message": message}


def _text(value, *, max_length: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(E.INVALID_TYPE, "应为字符串")
    text = str(value).strip()
    if not text_storable(text):
        raise _Invalid(E.INVALID_TYPE, UNSTORABLE_MESSAGE)
    if not text:
        raise _Invalid(E.REQUIRED, "必填")
    if len(text) > max_length:
        raise _Invalid(E.TOO_LONG, f"最多 {max_length} 个字符")
    return text


def _identifier(value) -> str:
    try:
        return external_id_normalize(value)
    except InvalidIdentifier as exc:
        raise _Invalid(IngestErrorCode(exc.code), exc.message) from None


def _product_code(value) -> str:
    code = _identifier(value)
    if len(code) > 32:
        raise _Invalid(E.TOO_LONG, "最多 32 个字符")
    return code


def parse_aware_datetime(value) -> datetime:
    """ISO 8601 with a UTC offset; naive times are rejected because their zone is a guess."""
    if not isinstance(value, str):
        raise _Invalid(E.INVALID_TYPE, "应为 ISO 8601 时间字符串")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Invalid(E.INVALID_DATETIME, "时间格式应为 ISO 8601，如 2025-03-01T09:30:00+08:00") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Invalid(E.NAIVE_DATETIME, "时间必须带时区偏移，如 +08:00")
    if not utc_offset_valid(parsed):
        raise _Invalid(E.INVALID_DATETIME, "时区偏移应在 -14:00 到 +14:00 之间")
    if parsed.year < 1990 or parsed > timezone.now() + _FUTURE_SLACK:
        raise _Invalid(E.INVALID_DATETIME, "时间应在 1990 年之后且不晚于明天")
    return parsed


def _amount(value) -> Decimal:
    try:
        return decimal_parse(value, integer_digits=16, positive=True)
    except InvalidNumber as exc:
        raise _Invalid(IngestErrorCode(exc.code), exc.message) from None


def _validate(rows: list, *, key_field: str, fields: dict, required: tuple) -> tuple[list[dict], list[dict]]:
    """Clean each row with ``fields[name](value)``; returns (valid rows with ``index``, errors).
    A second row with the same key is a duplicate (one statement cannot touch a row twice)."""
    valid, errors, seen = [], [], set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(_error(index, "", "", E.INVALID_TYPE, "每一行应为一个对象"))
            continue
        raw_key = row.get(key_field)
        key = str(raw_key).strip()[:64] if isinstance(raw_key, str | int) and not isinstance(raw_key, bool) else ""
        row_errors = [_error(index, key, str(name), E.UNKNOWN_FIELD, "未知字段") for name in row if name not in fields]
        clean = {"index": index}
        for name, cleaner in fields.items():
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                if name in required:
                    row_errors.append(_error(index, key, name, E.REQUIRED, "必填"))
                continue
            try:
                clean[name] = cleaner(value)
            except _Invalid as exc:
                row_errors.append(_error(index, key, name, exc.code, exc.message))
        if not row_errors and clean[key_field] in seen:
            row_errors.append(_error(index, key, key_field, E.DUPLICATE, "同一批数据中重复"))
        if row_errors:
            errors.extend(row_errors)
            continue
        seen.add(clean[key_field])
        valid.append(clean)
    return valid, errors


