"""CRM pull sync: products, then customers, then trades (trades need both), each page upserted in SQL.

Guarantees, per resource (CrmSyncState):

* A pass asks for everything with ``updated_at >= watermark`` (inclusive) page by page. Each page is
  written and its ``next_cursor`` saved in ONE transaction, so after a failure the next run resumes
  at the first page not written, with the same ``updated_since`` (``pass_started_watermark``): no
  gap, and nothing is applied twice except by idempotent upserts.
* The watermark moves only when a pass reaches the last page, to the largest ``updated_at`` the
  pass saw. Re-reading from it inclusive repeats the records at that instant; the upserts only
  write real changes, so the overlap shows up as "unchanged". (If a resumed pass sees no record at
  all, the watermark stays where it was: the next pass re-reads more than needed, harmlessly.)
* Upserts compare before writing (``IS DISTINCT FROM``), so created / updated / unchanged are exact
  and a sync with nothing new changes nothing.
* One sync at a time (a PostgreSQL advisory lock); a second one returns None at once.

Invalid records (unknown branch, advisor, product, bad enum …) are skipped and listed in the run's
``errors``; they do not stop the pass. HTTP failures stop the run (status failed, ``error``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg2.extras import execute_values

from core.services import audit_record
from customers.bulk import FIELDS as CUSTOMER_FIELDS
from customers.bulk import customer_bulk_upsert
from customers.models import Customer, Product, ProductRisk, Trade
from integrations.crm.client import CrmClient, CrmError
from integrations.models import CrmSyncRun, CrmSyncState
from integrations.sync_lock import sync_lock

logger = logging.getLogger(__name__)

RESOURCES = ("products", "customers", "trades")
ADVISORY_LOCK_KEY = 0x63726D73796E63  # "crmsync"
MAX_ERRORS_KEPT = 200
ACTOR_LABEL = "crm-sync"


def _updated_at(record: dict) -> datetime | None:
    value = record.get("updated_at")
    moment = parse_datetime(value) if isinstance(value, str) else None
    return moment


# --- upserting one page ------------------------------------------------------------------------

def _counts(valid: int, flags: list[bool], invalid: int) -> dict:
    created = sum(1 for f in flags if f)
    return {"created": created, "updated": len(flags) - created, "unchanged": valid - len(flags), "invalid": invalid}


def _products_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    errors, rows = [], []
    for r in records:
        code, name, kind, risk = (str(r.get(k) or "").strip() for k in ("code", "name", "type", "risk_level"))
        if not code or not name or not kind or risk not in ProductRisk.values or len(code) > 32:
            errors.append({"resource": "products", "id": r.get("id"), "message": "产品代码、名称、类型或风险等级无效"})
            continue
        rows.append((code, name[:100], kind[:30], risk))
    flags: list[bool] = []
    if rows:
        table = Product._meta.db_table
        with connection.cursor() as cursor:
            flags = [created for (created,) in execute_values(
                cursor.cursor,
                f"INSERT INTO {table} AS t (code, name, type, risk_level) VALUES %s "
                "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type, "
                "risk_level = EXCLUDED.risk_level "
                "WHERE (t.name, t.type, t.risk_level) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.type, EXCLUDED.risk_level) "
                "RETURNING (xmax = 0)",
                sorted(rows), page_size=len(rows), fetch=True)]
    return _counts(len(rows), flags, len(errors)), errors


def _customers_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    rows = [{k: v for k, v in r.items() if k in CUSTOMER_FIELDS} for r in records]
    result = customer_bulk_upsert(actor_label=ACTOR_LABEL, rows=rows, audit=False)
    errors = [{"resource": "customers", "id": e["external_id"], "field": e["field"], "message": e["message"]}
              for e in result["errors"]]
    return {k: result[k] for k in ("created", "updated", "unchanged", "invalid")}, errors


def _trades_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    errors, rows = [], []
    for r in records:
        external_id = str(r.get("external_id") or r.get("id") or "").strip()
        traded_at = parse_datetime(str(r.get("traded_at") or ""))
        try:
            amount = Decimal(str(r.get("amount"))).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            amount = None
        if (not external_id or len(external_id) > 64 or traded_at is None or r.get("side") not in Trade.Side.values
                or amount is None or not amount.is_finite() or amount <= 0):
            errors.append({"resource": "trades", "id": r.get("id"), "message": "交易号、时间、方向或金额无效"})
            continue
        rows.append((external_id, str(r.get("customer") or ""), str(r.get("product") or ""), traded_at, r["side"],
                     amount))
    flags: list[bool] = []
    if rows:
        trade, customer, product = Trade._meta.db_table, Customer._meta.db_table, Product._meta.db_table
        with connection.cursor() as cursor:
            result = execute_values(
                cursor.cursor,
                f"WITH v (external_id, customer, product, traded_at, side, amount) AS (VALUES %s), "
                f"upserted AS (INSERT INTO {trade} AS t (external_id, customer_id, product_id, traded_at, side, amount) "
                f"SELECT v.external_id, c.id, p.id, v.traded_at, v.side, v.amount FROM v "
                f"JOIN {customer} c ON c.external_id = v.customer JOIN {product} p ON p.code = v.product "
                "ORDER BY v.external_id "
                "ON CONFLICT (external_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, "
                "product_id = EXCLUDED.product_id, traded_at = EXCLUDED.traded_at, side = EXCLUDED.side, "
                "amount = EXCLUDED.amount "
                "WHERE (t.customer_id, t.product_id, t.traded_at, t.side, t.amount) IS DISTINCT FROM "
                "(EXCLUDED.customer_id, EXCLUDED.product_id, EXCLUDED.traded_at, EXCLUDED.side, EXCLUDED.amount) "
                "RETURNING t.external_id, (xmax = 0) AS created) "
                "SELECT v.external_id, u.created, (c.id IS NOT NULL AND p.id IS NOT NULL) FROM v "
                f"LEFT JOIN upserted u ON u.external_id = v.external_id "
                f"LEFT JOIN {customer} c ON c.external_id = v.customer LEFT JOIN {product} p ON p.code = v.product",
                rows, template="(%s, %s, %s, %s::timestamptz, %s, %s::numeric)", page_size=len(rows), fetch=True)
        unresolved = [external_id for external_id, _created, resolved in result if not resolved]
        flags = [created for _id, created, resolved in result if resolved and created is not None]
        errors += [{"resource": "trades", "id": t, "message": "客户或产品不存在"} for t in unresolved]
        valid = len(rows) - len(unresolved)
    else:
        valid = 0
    return _counts(valid, flags, len(errors)), errors


UPSERTS = {"products": _products_upsert, "customers": _customers_upsert, "trades": _trades_upsert}


# --- a pass over one resource ------------------------------------------------------------------

def _add(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def _resource_pass(*, client: CrmClient, resource: str, run: CrmSyncRun, page_size: int) -> None:
    """Pages until the last one (watermark advanced) or an exception (cursor of the last written page kept)."""
    state, _ = CrmSyncState.objects.get_or_create(resource=resource)
    if not state.cursor:  # a new pass
        state.pass_started_watermark = state.watermark
        state.save(update_fields=["pass_started_watermark"])
    since, cursor = state.pass_started_watermark, state.cursor or None
    pass_max: datetime | None = None
    counts = run.counts.setdefault(resource, {"created": 0, "updated": 0, "unchanged": 0, "invalid": 0})
    while True:
        records, next_cursor = client.page(resource, updated_since=since, cursor=cursor, limit=page_size)
        seen = [m for m in (_updated_at(r) for r in records) if m is not None]
        if seen:
            pass_max = max([*seen, *([pass_max] if pass_max else [])])
        with transaction.atomic():
            page_counts, errors = UPSERTS[resource](records)
            state.cursor = next_cursor or ""
            fields = ["cursor", "updated_at"]
            if next_cursor is None:
                if pass_max is not None and (state.watermark is None or pass_max > state.watermark):
                    state.watermark = pass_max
                state.pass_started_watermark = None
                fields += ["watermark", "pass_started_watermark"]
            state.updated_at = timezone.now()
            state.save(update_fields=fields)
            _add(counts, page_counts)
            run.pages += 1
            run.errors = (run.errors + errors)[:MAX_ERRORS_KEPT]
            run.save(update_fields=["pages", "counts", "errors"])
        if next_cursor is None:
            return
        cursor = next_cursor


def crm_sync_run(*, triggered_by: str, page_size: int | None = None, client: CrmClient | None = None) -> CrmSyncRun | None:
    """Pull what changed in the CRM since the last complete pass (see the module doc) and record the run.

    Returns the run (done or failed), or None when another sync holds the lock.
    """
    page_size = page_size or settings.CRM_PAGE_SIZE
    with sync_lock(ADVISORY_LOCK_KEY, "crm sync") as got:
        if not got:
            return None
        run = CrmSyncRun.objects.create(triggered_by=str(triggered_by)[:150], counts={}, errors=[])
        started = time.monotonic()
        try:
            client = client or CrmClient()
            for resource in RESOURCES:
                _resource_pass(client=client, resource=resource, run=run, page_size=page_size)
        except (CrmError, DatabaseError) as exc:
            run.status, run.error = CrmSyncRun.Status.FAILED, str(exc)[:2000]
            logger.warning("crm sync run %s failed: %s", run.pk, exc)
        else:
            run.status = CrmSyncRun.Status.DONE
        run.finished_at = timezone.now()
        run.duration_ms = int((time.monotonic() - started) * 1000)
        with transaction.atomic():
            run.save(update_fields=["status", "error", "finished_at", "duration_ms"])
            audit_record(actor=None, actor_label=run.triggered_by or ACTOR_LABEL, action="crm.sync",
                         target_type="crm_sync_run", target_id=run.pk,
                         details={"status": run.status, "pages": run.pages, "counts": run.counts})
        return run


def crm_sync_runs(*, limit: int = 50):
    return CrmSyncRun.objects.order_by("-started_at", "-id")[:limit]


def crm_sync_states() -> list[CrmSyncState]:
    states = {s.resource: s for s in CrmSyncState.objects.all()}
    return [states.get(r) or CrmSyncState(resource=r) for r in RESOURCES]
