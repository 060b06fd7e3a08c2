"""Trades, behaviour events and products: validated as plain dicts (customers.ingest.rows) and written set-based —
one ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT … DO UPDATE … WHERE (…) IS DISTINCT FROM (…) RETURNING`` —
so created/updated/unchanged are exact and the same batch sent twice changes nothing the second time. The REST
API (scoped to its client's branch) and the CRM pull sync (the firm) both write through here; what was written is
announced as core.events.TradesIngested / EventsIngested (the live dashboard, rule tags and tiers follow it)."""

from __future__ import annotations

import json

from django.db import connection, transaction

from core.events import EventsIngested, TradesIngested, emit
from core.services import audit_record
from customers.ingest.rows import (
    E,
    _amount,
    _error,
    _identifier,
    _Invalid,
    _product_code,
    _text,
    _validate,
    parse_aware_datetime,
)
from customers.models import BehaviourEvent, Customer, Product, ProductRisk, Trade


def _resolve_customers(*, branch_id: int | None, rows: list[dict], key_field: str, errors: list) -> list[dict]:
    """customer external_id → id within the caller's scope; unknown and out-of-scope look the same."""
    customers = Customer.objects.all() if branch_id is None else Customer.objects.filter(branch_id=branch_id)
    ids = dict(customers.filter(external_id__in={r["customer"] for r in rows}).values_list("external_id", "id"))
    kept = []
    for row in rows:
        row["customer_id"] = ids.get(row["customer"])
        if row["customer_id"] is None:
            errors.append(_error(row["index"], row[key_field], "customer", E.UNKNOWN_CUSTOMER, "客户不存在"))
        else:
            kept.append(row)
    return kept


def _foreign_keys(*, branch_id: int | None, model, key_field: str, rows: list[dict], errors: list) -> list[dict]:
    """Rows whose key already belongs to a customer outside the caller's scope are errors, not overwrites."""
    if branch_id is None or not rows:
        return rows
    taken = set(model.objects.filter(**{f"{key_field}__in": [r[key_field] for r in rows]})
                .exclude(customer__branch_id=branch_id).values_list(key_field, flat=True))
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


def _scope_guard(branch_id: int | None) -> tuple[str, list]:
    if branch_id is None:
        return "", []
    return (f" AND EXISTS (SELECT 1 FROM {Customer._meta.db_table} c WHERE c.id = t.customer_id AND c.branch_id = %s)",
            [branch_id])


def _execute(sql: str, params: list, event_type=None) -> tuple[int, int]:
    """Run one upsert; with ``event_type`` (TradesIngested / EventsIngested) announce what it wrote."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    created = sum(1 for r in rows if r[1])
    if event_type and rows:
        emit(event_type(created_ids=tuple(r[0] for r in rows if r[1]), updated_ids=tuple(r[0] for r in rows if not r[1]),
                        customer_ids=tuple(sorted({r[2] for r in rows}))))
    return created, len(rows) - created


def _result(valid_count: int, created: int, updated: int, errors: list) -> dict:
    errors.sort(key=lambda e: e["index"])
    return {"created": created, "updated": updated, "unchanged": valid_count - created - updated, "errors": errors}


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
def trades_upsert(*, rows: list, actor_label: str, branch_id: int | None = None, audit: bool = True) -> dict:
    """Upsert trades by external_id for customers in ``branch_id`` (None: the firm); idempotent."""
    valid, errors = _validate(rows, key_field="external_id", fields=TRADE_FIELDS, required=tuple(TRADE_FIELDS))
    valid = _resolve_customers(branch_id=branch_id, rows=valid, key_field="external_id", errors=errors)
    products = dict(Product.objects.filter(code__in={r["product"] for r in valid}).values_list("code", "id"))
    kept = []
    for row in valid:
        row["product_id"] = products.get(row["product"])
        if row["product_id"] is None:
            errors.append(_error(row["index"], row["external_id"], "product", E.UNKNOWN_PRODUCT, "产品代码不存在"))
        else:
            kept.append(row)
    kept = _foreign_keys(branch_id=branch_id, model=Trade, key_field="external_id", rows=kept, errors=errors)
    created = updated = 0
    if kept:
        guard, guard_params = _scope_guard(branch_id)
        sql = _upsert_sql(table=Trade._meta.db_table, key="external_id", scope_guard=guard, columns=[
            ("customer_id", "bigint"), ("product_id", "bigint"), ("traded_at", "timestamptz"),
            ("side", "text"), ("amount", "numeric")])
        params = [[r["external_id"] for r in kept], [r["customer_id"] for r in kept], [r["product_id"] for r in kept],
                  [r["traded_at"] for r in kept], [r["side"] for r in kept], [r["amount"] for r in kept], *guard_params]
        created, updated = _execute(sql, params, TradesIngested)
    result = _result(len(kept), created, updated, errors)
    if audit:
        _audit(actor_label, "trade.bulk_ingest", "trade", result)
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
def events_upsert(*, rows: list, actor_label: str, branch_id: int | None = None, audit: bool = True) -> dict:
    """Upsert behaviour events by event_id for customers in ``branch_id`` (None: the firm); idempotent."""
    valid, errors = _validate(rows, key_field="event_id", fields=EVENT_FIELDS,
                              required=("event_id", "customer", "type", "occurred_at"))
    valid = _resolve_customers(branch_id=branch_id, rows=valid, key_field="event_id", errors=errors)
    valid = _foreign_keys(branch_id=branch_id, model=BehaviourEvent, key_field="event_id", rows=valid, errors=errors)
    created = updated = 0
    if valid:
        guard, guard_params = _scope_guard(branch_id)
        sql = _upsert_sql(table=BehaviourEvent._meta.db_table, key="event_id", scope_guard=guard, columns=[
            ("customer_id", "bigint"), ("type", "text"), ("occurred_at", "timestamptz"), ("properties", "jsonb")])
        params = [[r["event_id"] for r in valid], [r["customer_id"] for r in valid], [r["type"] for r in valid],
                  [r["occurred_at"] for r in valid], [r.get("properties", "{}") for r in valid], *guard_params]
        created, updated = _execute(sql, params, EventsIngested)
    result = _result(len(valid), created, updated, errors)
    if audit:
        _audit(actor_label, "event.bulk_ingest", "behaviour_event", result)
    return result


# --- products ------------------------------------------------------------------------------

PRODUCT_FIELDS = {
    "code": _product_code,
    "name": lambda v: _text(v, max_length=100),
    "type": lambda v: _text(v, max_length=30),
    "risk_level": lambda v: _choice(v, ProductRisk.values),
}


@transaction.atomic
def products_upsert(*, rows: list, actor_label: str, audit: bool = True) -> dict:
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
    if audit:
        _audit(actor_label, "product.bulk_upsert", "product", result)
    return result




def _audit(actor_label: str, action: str, target_type: str, result: dict) -> None:
    audit_record(actor=None, actor_label=actor_label, action=action, target_type=target_type,
                 details={"created": result["created"], "updated": result["updated"],
                          "unchanged": result["unchanged"], "errors": len(result["errors"])})
