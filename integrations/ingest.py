"""What the REST API writes, each call scoped to the calling API client and audited as ``api:<client name>``:
customers, trades, behaviour events and products through the one ingest pipeline (customers.ingest), and a
customer's tags through tagging's writer."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.services import audit_record
from customers import ingest
from customers.models import Customer
from integrations.models import ApiClient
from tagging.models import Tag, TagSource


def actor_label(client: ApiClient) -> str:
    return f"api:{client.name}"[:150]


# Fields a JSON row must give as a string (or null, "not given"). The shared pipeline reads a number as text because
# spreadsheets and the CRM hand numbers over; the API's schema says string, so 12 for a name or 20250301 for a date is
# an error of the row here (identifiers, times and properties the pipeline already checks; amounts may be numbers).
TEXT_FIELDS = {
    "customers": ("name", "mobile", "id_number", "gender", "birth_date", "branch", "advisor", "risk_level",
                  "risk_assessed_at", "opened_at", "channel", "utm_source", "utm_medium", "utm_campaign",
                  "funnel_stage", "region", "occupation", "lifecycle_stage"),
    "trades": ("side",),
    "events": ("type",),
    "products": ("name", "type", "risk_level"),
}
KEY_FIELDS = {"customers": "external_id", "trades": "external_id", "events": "event_id", "products": "code"}


def _with_json_types(kind: str, rows: list, upsert) -> dict:
    """``upsert(rows)`` without the rows where a TEXT_FIELDS field holds a number, boolean, list or object: each such
    value is a row error ``invalid_type`` and the row is not written (it reaches the pipeline as a placeholder, so
    every other row keeps its index)."""
    key_field, typed, type_errors = KEY_FIELDS[kind], [], []
    for index, row in enumerate(rows):
        wrong = [name for name in TEXT_FIELDS[kind] if isinstance(row, dict) and row.get(name) is not None
                 and not isinstance(row[name], str)]
        if not wrong:
            typed.append(row)
            continue
        raw_key = row.get(key_field)
        key = raw_key.strip()[:64] if isinstance(raw_key, str) else ""
        type_errors += [{"index": index, "external_id": key, "field": name, "code": "invalid_type",
                         "message": "应为字符串"} for name in wrong]
        typed.append(None)  # the pipeline reports "not an object" for it, replaced below by the errors above
    result = upsert(typed)
    if type_errors:
        placeholders = {e["index"] for e in type_errors}
        kept = [e for e in result["errors"] if not (e["index"] in placeholders and e["field"] == "")]
        result["errors"] = sorted(kept + type_errors, key=lambda e: e["index"])
    return result


def trades_ingest(*, client: ApiClient, rows: list) -> dict:
    return _with_json_types("trades", rows, lambda typed: ingest.trades_upsert(
        rows=typed, actor_label=actor_label(client), branch_id=client.branch_id))


def events_ingest(*, client: ApiClient, rows: list) -> dict:
    return _with_json_types("events", rows, lambda typed: ingest.events_upsert(
        rows=typed, actor_label=actor_label(client), branch_id=client.branch_id))


def products_upsert(*, client: ApiClient, rows: list) -> dict:
    return _with_json_types("products", rows, lambda typed: ingest.products_upsert(
        rows=typed, actor_label=actor_label(client)))


@transaction.atomic
def customers_upsert(*, client: ApiClient, rows: list) -> dict:
    """customers/ingest/customers.py's upsert, limited to the client's branch (enforced there, in the writing statement)."""
    result = _with_json_types("customers", rows, lambda typed: ingest.customer_bulk_upsert(
        actor_label=actor_label(client), rows=typed, branch_id=client.branch_id))
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
    name = data.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        row["name"] = customer.name  # bulk rows require a name; a PATCH without one (or null/blank) keeps it
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
    from tagging.writer import _NOT_GIVEN

    row = customer_tag_add(customer=customer, tag=tag, source=TagSource.API, actor=actor_label(client),
                           evidence=evidence, expires_at=_NOT_GIVEN if expires_at is None else expires_at)
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
