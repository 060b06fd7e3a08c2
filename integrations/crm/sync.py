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

Every page is written through the one ingest pipeline (customers.ingest) — the same validation, scope guard,
upserts and domain events as the REST API — so trades that arrive here move the live dashboard and re-tier their
customers like any other. Invalid records (unknown branch, advisor, product, bad enum …) are skipped and listed in
the run's ``errors``; they do not stop the pass. HTTP failures stop the run (status failed, ``error``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.services import audit_record
from customers import ingest
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


# --- upserting one page: through the one ingest pipeline (customers.ingest), like the REST API --------------

PRODUCT_KEYS = ("code", "name", "type", "risk_level")
TRADE_KEYS = ("external_id", "customer", "product", "traded_at", "side", "amount")


def _page_errors(resource: str, result: dict, records: list[dict], id_of) -> list[dict]:
    return [{"resource": resource, "id": id_of(records[e["index"]]), "field": e["field"], "message": e["message"]}
            for e in result["errors"]]


def _counts(result: dict) -> dict:
    return {"created": result["created"], "updated": result["updated"], "unchanged": result["unchanged"],
            "invalid": len({e["index"] for e in result["errors"]})}


def _products_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    rows = [{k: r.get(k) for k in PRODUCT_KEYS} for r in records]
    result = ingest.products_upsert(rows=rows, actor_label=ACTOR_LABEL, audit=False)
    return _counts(result), _page_errors("products", result, records, lambda r: r.get("code") or r.get("id"))


def _customers_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    rows = [{k: v for k, v in r.items() if k in ingest.FIELDS} for r in records]
    result = ingest.customer_bulk_upsert(actor_label=ACTOR_LABEL, rows=rows, audit=False)
    errors = [{"resource": "customers", "id": e["external_id"], "field": e["field"], "message": e["message"]}
              for e in result["errors"]]
    return {k: result[k] for k in ("created", "updated", "unchanged", "invalid")}, errors


def _trades_upsert(records: list[dict]) -> tuple[dict, list[dict]]:
    rows = [{**{k: r.get(k) for k in TRADE_KEYS}, "external_id": r.get("external_id") or r.get("id")} for r in records]
    result = ingest.trades_upsert(rows=rows, actor_label=ACTOR_LABEL, audit=False)
    return _counts(result), _page_errors("trades", result, records, lambda r: r.get("external_id") or r.get("id"))


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
