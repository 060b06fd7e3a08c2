"""What the REST API writes: customers (through customers/bulk.py), trades, behaviour events,
products and tags, each scoped to the calling API client and audited as ``api:<client name>``.

Rows are validated as plain dicts and written set-based: one ``INSERT … SELECT FROM unnest(arrays)
ON CONFLICT … DO UPDATE … WHERE (…) IS DISTINCT FROM (…) RETURNING``, so created/updated/unchanged
are exact and the same batch sent twice changes nothing the second time. After commit the touched
customers' rule tags (and, for trades, tiers) are recomputed by Celery tasks.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.services import audit_record
from core.validators import (
    UNSTORABLE_MESSAGE,
    InvalidIdentifier,
    InvalidNumber,
    decimal_parse,
    external_id_normalize,
    text_storable,
    utc_offset_valid,
)
from customers.bulk import customer_bulk_upsert
from customers.models import BehaviourEvent, Customer, Product, ProductRisk, Trade
from integrations.models import ApiClient
from tagging.models import Tag, TagSource


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


def actor_label(client: ApiClient) -> str:
    return f"api:{client.name}"[:150]


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
        raise _Invalid(E.INVALID_DATETIME, "时区偏移应在 -12:00 到 +14:00 之间")
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


def _resolve_customers(*, client: ApiClient, rows: list[dict], key_field: str, errors: list) -> list[dict]:
    """customer external_id → id within the client's scope; unknown and out-of-scope look the same."""
    ids = dict(Customer.objects.visible_to(client).filter(external_id__in={r["customer"] for r in rows})
               .values_list("external_id", "id"))
    kept = []
    for row in rows:
        row["customer_id"] = ids.get(row["customer"])
        if row["customer_id"] is None:
            errors.append(_error(row["index"], row[key_field], "customer", E.UNKNOWN_CUSTOMER, "客户不存在"))
        else:
            kept.append(row)
    return kept


def _foreign_keys(*, client: ApiClient, model, key_field: str, rows: list[dict], errors: list) -> list[dict]:
    """Rows whose key already belongs to a customer outside the client's scope are errors, not overwrites."""
    if client.branch_id is None or not rows:
        return rows
    taken = set(model.objects.filter(**{f"{key_field}__in": [r[key_field] for r in rows]})
                .exclude(customer__branch_id=client.branch_id).values_list(key_field, flat=True))
    kept = []
    for row in rows:
        if row[key_field] in taken:
            errors.append(_error(row["index"], row[key_field], key_field, E.OUT_OF_SCOPE, "该编号已被其他营业部的客户使用"))
        else:
            kept.append(row)
    return kept


def _upsert_sql(*, table: str, key: str, columns: list[tuple[str, str]], scope_guard: str = "") -> str:
    """One statement: unnest the arrays, insert, update only real changes, return (id, created, customer)."""
    names = [key, *[n for n, _t in columns]]
    arrays = ", ".join(f"%s::{t}[]" for _n, t in [(key, "text"), *columns])
    compared = [n for n, _t in columns]
    return (
        f"INSERT INTO {table} AS t ({', '.join(names)}) "
        f"SELECT {', '.join(names)} FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(f'{n} = EXCLUDED.{n}' for n in compared)} "
        f"WHERE ({', '.join(f't.{n}' for n in compared)}) IS DISTINCT FROM ({', '.join(f'EXCLUDED.{n}' for n in compared)})"
        f"{scope_guard} RETURNING t.id, (t.xmax = 0) AS created"
        + (", t.customer_id" if "customer_id" in compared else "")
    )


def _scope_guard(client: ApiClient) -> tuple[str, list]:
    if client.branch_id is None:
        return "", []
    return (f" AND EXISTS (SELECT 1 FROM {Customer._meta.db_table} c WHERE c.id = t.customer_id AND c.branch_id = %s)",
            [client.branch_id])


# Callables (created_ids, updated_ids) run after a trades / events batch that wrote rows commits (the live
# dashboard registers here). One that raises does not stop the others.
TRADES_INGESTED_HOOKS: list = []
EVENTS_INGESTED_HOOKS: list = []


def _execute(sql: str, params: list, hooks: list | None = None) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    created = sum(1 for r in rows if r[1])
    if hooks and rows:
        created_ids, updated_ids = [r[0] for r in rows if r[1]], [r[0] for r in rows if not r[1]]
        for hook in hooks:
            transaction.on_commit(lambda hook=hook: hook(created_ids, updated_ids), robust=True)
    return created, len(rows) - created


def _result(valid_count: int, created: int, updated: int, errors: list) -> dict:
    errors.sort(key=lambda e: e["index"])
    return {"created": created, "updated": updated, "unchanged": valid_count - created - updated, "errors": errors}


def _recompute_after_commit(customer_ids: list[int], *, tiers: bool) -> None:
    from integrations.tasks import tier_incremental
    from tagging.tasks import tag_rules_apply_all_task

    ids = sorted(set(customer_ids))
    if not ids:
        return
    transaction.on_commit(lambda: tag_rules_apply_all_task.delay(customer_ids=ids), robust=True)
    if tiers:
        transaction.on_commit(lambda: tier_incremental.delay(customer_ids=ids), robust=True)


# --- trades --------------------------------------------------------------------------------

TRADE_FIELDS = {
    "external_id": _identifier,
    "customer": _identifier,
    "product": _identifier,
    "traded_at": parse_aware_datetime,
    "side": lambda v: _choice(v, Trade.Side.values),
    "amount": _amount,
}


def _choice(value, allowed: list[str]) -> str:
    text = _text(value, max_length=20)
    if text not in allowed and text.lower() not in allowed and text.upper() not in allowed:
        raise _Invalid(E.INVALID_CHOICE, f"取值无效，可选：{'/'.join(allowed)}")
    return next(a for a in allowed if a in (text, text.lower(), text.upper()))


@transaction.atomic
def trades_ingest(*, client: ApiClient, rows: list) -> dict:
    """Upsert trades by external_id for customers in the client's scope; idempotent."""
    valid, errors = _validate(rows, key_field="external_id", fields=TRADE_FIELDS, required=tuple(TRADE_FIELDS))
    valid = _resolve_customers(client=client, rows=valid, key_field="external_id", errors=errors)
    products = dict(Product.objects.filter(code__in={r["product"] for r in valid}).values_list("code", "id"))
    kept = []
    for row in valid:
        row["product_id"] = products.get(row["product"])
        if row["product_id"] is None:
            errors.append(_error(row["index"], row["external_id"], "product", E.UNKNOWN_PRODUCT, "产品代码不存在"))
        else:
            kept.append(row)
    kept = _foreign_keys(client=client, model=Trade, key_field="external_id", rows=kept, errors=errors)
    created = updated = 0
    if kept:
        guard, guard_params = _scope_guard(client)
        sql = _upsert_sql(table=Trade._meta.db_table, key="external_id", scope_guard=guard, columns=[
            ("customer_id", "bigint"), ("product_id", "bigint"), ("traded_at", "timestamptz"),
            ("side", "text"), ("amount", "numeric")])
        params = [[r["external_id"] for r in kept], [r["customer_id"] for r in kept], [r["product_id"] for r in kept],
                  [r["traded_at"] for r in kept], [r["side"] for r in kept], [r["amount"] for r in kept], *guard_params]
        created, updated = _execute(sql, params, TRADES_INGESTED_HOOKS)
        _recompute_after_commit([r["customer_id"] for r in kept], tiers=True)
    result = _result(len(kept), created, updated, errors)
    _audit(client, "trade.bulk_ingest", "trade", result)
    return result


# --- behaviour events ----------------------------------------------------------------------

def _properties(value) -> str:
    if not isinstance(value, dict):
        raise _Invalid(E.INVALID_TYPE, "应为对象")
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > 10_000:
        raise _Invalid(E.TOO_LONG, "属性最多 10000 个字符")
    if "\\u0000" in text:
        raise _Invalid(E.INVALID_TYPE, "属性不能包含 NUL 字符")
    return text


EVENT_FIELDS = {
    "event_id": _identifier,
    "customer": _identifier,
    "type": lambda v: _text(v, max_length=40),
    "occurred_at": parse_aware_datetime,
    "properties": _properties,
}


@transaction.atomic
def events_ingest(*, client: ApiClient, rows: list) -> dict:
    """Upsert behaviour events by event_id for customers in the client's scope; idempotent."""
    valid, errors = _validate(rows, key_field="event_id", fields=EVENT_FIELDS,
                              required=("event_id", "customer", "type", "occurred_at"))
    valid = _resolve_customers(client=client, rows=valid, key_field="event_id", errors=errors)
    valid = _foreign_keys(client=client, model=BehaviourEvent, key_field="event_id", rows=valid, errors=errors)
    created = updated = 0
    if valid:
        guard, guard_params = _scope_guard(client)
        sql = _upsert_sql(table=BehaviourEvent._meta.db_table, key="event_id", scope_guard=guard, columns=[
            ("customer_id", "bigint"), ("type", "text"), ("occurred_at", "timestamptz"), ("properties", "jsonb")])
        params = [[r["event_id"] for r in valid], [r["customer_id"] for r in valid], [r["type"] for r in valid],
                  [r["occurred_at"] for r in valid], [r.get("properties", "{}") for r in valid], *guard_params]
        created, updated = _execute(sql, params, EVENTS_INGESTED_HOOKS)
        _recompute_after_commit([r["customer_id"] for r in valid], tiers=False)
    result = _result(len(valid), created, updated, errors)
    _audit(client, "event.bulk_ingest", "behaviour_event", result)
    return result


# --- products ------------------------------------------------------------------------------

PRODUCT_FIELDS = {
    "code": _product_code,
    "name": lambda v: _text(v, max_length=100),
    "type": lambda v: _text(v, max_length=30),
    "risk_level": lambda v: _choice(v, ProductRisk.values),
}


@transaction.atomic
def products_upsert(*, client: ApiClient, rows: list) -> dict:
    """Upsert products by code (firm-wide reference data); idempotent."""
    valid, errors = _validate(rows, key_field="code", fields=PRODUCT_FIELDS, required=tuple(PRODUCT_FIELDS))
    created = updated = 0
    if valid:
        sql = _upsert_sql(table=Product._meta.db_table, key="code",
                          columns=[("name", "text"), ("type", "text"), ("risk_level", "text")])
        params = [[r["code"] for r in valid], [r["name"] for r in valid], [r["type"] for r in valid],
                  [r["risk_level"] for r in valid]]
        created, updated = _execute(sql, params)
    result = _result(len(valid), created, updated, errors)
    _audit(client, "product.bulk_upsert", "product", result)
    return result


def _audit(client: ApiClient, action: str, target_type: str, result: dict) -> None:
    audit_record(actor=None, actor_label=actor_label(client), action=action, target_type=target_type,
                 details={"created": result["created"], "updated": result["updated"],
                          "unchanged": result["unchanged"], "errors": len(result["errors"])})


# --- customers -----------------------------------------------------------------------------

@transaction.atomic
def customers_upsert(*, client: ApiClient, rows: list) -> dict:
    """customers/bulk.py's upsert, limited to the client's branch (enforced there, in the writing statement)."""
    result = customer_bulk_upsert(actor_label=actor_label(client), rows=rows, branch_id=client.branch_id)
    return {k: result[k] for k in ("created", "updated", "unchanged", "errors")}


@transaction.atomic
def customer_patch(*, client: ApiClient, customer: Customer, data) -> Customer:
    """Change some fields of one customer with the bulk validation; errors raise ApplicationError."""
    if not isinstance(data, dict):
        raise ApplicationError("invalid", "请求体应为一个对象")
    if "external_id" in data and str(data["external_id"]) != customer.external_id:
        raise ApplicationError("invalid", "external_id 不能修改",
                               [{"field": "external_id", "message": "与地址中的客户号不一致", "code": "immutable"}])
    row = {**data, "external_id": customer.external_id}
    if "name" not in data:
        row["name"] = customer.name  # bulk rows require a name; a PATCH keeps the stored one
    result = customers_upsert(client=client, rows=[row])
    if result["errors"]:
        raise ApplicationError("invalid", "请求数据无效",
                               [{"field": e["field"], "message": e["message"], "code": e["code"]} for e in result["errors"]])
    return customer


# --- tags ----------------------------------------------------------------------------------

def tag_get_active(*, code: str) -> Tag:
    tag = Tag.objects.filter(code=code, active=True).select_related("category").first()
    if tag is None:
        raise ApplicationError("unknown_tag", "标签不存在", [{"field": "tag", "message": "标签不存在", "code": "unknown_tag"}])
    return tag


@transaction.atomic
def customer_tag_set(*, client: ApiClient, customer: Customer, tag: Tag, evidence: str,
                     expires_at: datetime | None):
    from tagging.services import customer_tag_add

    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("invalid", "过期时间必须晚于现在",
                               [{"field": "expires_at", "message": "过期时间必须晚于现在", "code": "past"}])
    row = customer_tag_add(customer=customer, tag=tag, source=TagSource.API, actor=actor_label(client),
                           evidence=evidence, expires_at=expires_at)
    audit_record(actor=None, actor_label=actor_label(client), action="customer_tag.add", target_type="customer",
                 target_id=customer.external_id, details={"tag": tag.code})
    return row


@transaction.atomic
def customer_tag_unset(*, client: ApiClient, customer: Customer, tag: Tag) -> bool:
    from tagging.services import customer_tag_remove

    removed = customer_tag_remove(customer=customer, tag=tag, source=TagSource.API, actor=actor_label(client))
    if removed:
        audit_record(actor=None, actor_label=actor_label(client), action="customer_tag.remove",
                     target_type="customer", target_id=customer.external_id, details={"tag": tag.code})
    return removed
