"""CRM pull sync against the real sandbox over HTTP on a free local port."""

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from core.demo import demo_staff_load
from customers.models import Customer, Product, Trade
from integrations.crm import sandbox as crm_sandbox
from integrations.crm.client import CrmClient
from integrations.crm.sync import crm_sync_run
from integrations.models import CrmSyncRun, CrmSyncState

TOKEN = "test-crm-token"
PAGE = 7


@pytest.fixture
def crm(settings):
    sandbox, server = crm_sandbox.sandbox_serve(token=TOKEN, customers=30)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.CRM_BASE_URL, settings.CRM_API_TOKEN = url, TOKEN
    sandbox.url = url
    yield sandbox
    server.shutdown()
    server.server_close()


@pytest.fixture
def demo_staff(db):
    demo_staff_load()


def admin(crm, path, body):
    response = requests.post(f"{crm.url}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def sandbox_snapshot(crm):
    data = crm.data
    return {
        "products": {code: (r["name"], r["type"], r["risk_level"]) for code, r in data["products"].items()},
        "customers": {eid: (r["name"], r["branch"], r["advisor"], r["risk_level"], Decimal(r["total_assets"]))
                      for eid, r in data["customers"].items()},
        "trades": {tid: (r["customer"], r["product"], r["side"], Decimal(r["amount"]))
                   for tid, r in data["trades"].items()},
    }


def db_snapshot():
    codes = set(crm_sandbox.seed_data(customers=0)["products"])
    return {
        "products": {p.code: (p.name, p.type, p.risk_level) for p in Product.objects.filter(code__in=codes)},
        "customers": {c.external_id: (c.name, c.branch.code, c.advisor.employee_code, c.risk_level, c.total_assets)
                      for c in Customer.objects.select_related("branch", "advisor")},
        "trades": {t.external_id: (t.customer.external_id, t.product.code, t.side, t.amount)
                   for t in Trade.objects.select_related("customer", "product")},
    }


def totals(run, key):
    return {resource: counts[key] for resource, counts in run.counts.items()}


# --- the sandbox itself ------------------------------------------------------------------------

def test_sandbox_pages_are_stable_authenticated_and_seeded_deterministically(crm):
    assert requests.get(f"{crm.url}/api/customers", timeout=5).status_code == 401
    client = CrmClient(base_url=crm.url, token=TOKEN)
    seen, cursor = [], None
    while True:
        data, cursor = client.page("customers", updated_since=None, cursor=cursor, limit=4)
        seen += data
        if cursor is None:
            break
    assert [r["id"] for r in seen] == sorted(crm.data["customers"], key=lambda i: crm.data["customers"][i]["updated_at"])
    assert len(seen) == len({r["id"] for r in seen}) == 30
    assert {r["branch"] for r in seen} == {"BJ01", "SH01", "SZ01", "HZ01"}
    assert crm_sandbox.seed_data(customers=30) == crm_sandbox.seed_data(customers=30)
    # a record changed mid-pass moves behind the cursor: seen again later, never skipped
    first, cursor = client.page("customers", updated_since=None, cursor=None, limit=4)
    admin(crm, "/admin/records/customers", {"records": [{"id": first[0]["id"], "total_assets": "1.00"}]})
    rest = []
    while cursor:
        data, cursor = client.page("customers", updated_since=None, cursor=cursor, limit=4)
        rest += data
    assert rest[-1]["id"] == first[0]["id"] and rest[-1]["total_assets"] == "1.00"
    assert len(first) + len(rest) == 31


# --- syncing -----------------------------------------------------------------------------------

def test_full_sync_creates_everything_and_a_second_sync_changes_nothing(crm, demo_staff):
    run = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert run.status == CrmSyncRun.Status.DONE and run.error == "" and run.errors == []
    assert run.duration_ms is not None and run.finished_at is not None
    counts = crm.state()["counts"]
    assert totals(run, "created") == {"products": 12, "customers": 30, "trades": counts["trades"]}
    assert db_snapshot() == sandbox_snapshot(crm)
    assert run.pages == sum(-(-n // PAGE) for n in counts.values())
    states = {s.resource: s for s in CrmSyncState.objects.all()}
    assert {r: s.cursor for r, s in states.items()} == {"products": "", "customers": "", "trades": ""}
    latest_customer = max(r["updated_at"] for r in crm.data["customers"].values())
    assert states["customers"].watermark == crm_sandbox._parse_iso(latest_customer)

    second = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert second.status == CrmSyncRun.Status.DONE
    assert totals(second, "created") == totals(second, "updated") == {"products": 0, "customers": 0, "trades": 0}
    # the inclusive re-read only repeats the records at the watermark instant
    assert totals(second, "unchanged") == {"products": 1, "customers": 1, "trades": 1}
    assert db_snapshot() == sandbox_snapshot(crm)


def test_changes_in_the_crm_are_picked_up(crm, demo_staff):
    crm_sync_run(triggered_by="test", page_size=PAGE)
    admin(crm, "/admin/records/customers", {"records": [
        {"id": "CRM000003", "total_assets": "8888.88", "risk_level": "C5"},
        {"id": "CRM900001", "name": "新客户", "branch": "HZ01", "advisor": "E4001", "risk_level": "C2",
         "total_assets": "100.00"},
    ]})
    admin(crm, "/admin/records/products", {"records": [{"id": "CRM0001", "name": "CRM 专享·稳健理财 365 天",
                                                        "type": "wealth", "risk_level": "R2"}]})
    admin(crm, "/admin/records/trades", {"records": [{"id": "CRMT99999999", "customer": "CRM900001",
                                                      "product": "CRM0001", "traded_at": "2026-01-02T02:00:00Z",
                                                      "side": "buy", "amount": "5000.00"}]})
    run = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert run.status == CrmSyncRun.Status.DONE
    assert totals(run, "created") == {"products": 0, "customers": 1, "trades": 1}
    assert totals(run, "updated") == {"products": 1, "customers": 1, "trades": 0}
    customer = Customer.objects.get(external_id="CRM000003")
    assert (customer.total_assets, customer.risk_level) == (Decimal("8888.88"), "C5")
    assert Trade.objects.get(external_id="CRMT99999999").customer.external_id == "CRM900001"
    assert db_snapshot() == sandbox_snapshot(crm)


def test_a_failure_mid_pass_resumes_from_the_saved_cursor_without_gaps_or_duplicates(crm, demo_staff):
    product_pages = -(-12 // PAGE)  # 2
    crm.fail(count=1, after=product_pages + 2)  # the 3rd customers page answers 500
    failed = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert failed.status == CrmSyncRun.Status.FAILED and "HTTP 500" in failed.error
    assert failed.pages == product_pages + 2
    assert Customer.objects.count() == 2 * PAGE and not Trade.objects.exists()
    state = CrmSyncState.objects.get(resource="customers")
    assert state.cursor and state.watermark is None

    # meanwhile the CRM changes a record already synced and one not reached yet
    synced = sorted(crm.data["customers"].values(), key=lambda r: r["updated_at"])
    admin(crm, "/admin/records/customers", {"records": [{"id": synced[0]["id"], "total_assets": "1.23"},
                                                        {"id": synced[-1]["id"], "total_assets": "4.56"}]})
    log_before = len(crm.state()["log"])
    resumed = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert resumed.status == CrmSyncRun.Status.DONE, resumed.error
    # products start a new pass from their watermark; customers continue at the saved cursor
    first_request = next(u for u in map(urlparse, crm.state()["log"][log_before:]) if u.path == "/api/customers")
    assert parse_qs(first_request.query)["cursor"] == [state.cursor]
    assert db_snapshot() == sandbox_snapshot(crm)  # exactly the CRM's data
    assert Customer.objects.filter(external_id__startswith="CRM").count() == 30
    assert totals(resumed, "created")["customers"] == 30 - 2 * PAGE
    assert CrmSyncState.objects.get(resource="customers").cursor == ""
    # both changed records moved behind the cursor and came with the resumed pass; nothing is left
    again = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert totals(again, "created") == {"products": 0, "customers": 0, "trades": 0}
    assert db_snapshot() == sandbox_snapshot(crm)


def test_invalid_records_are_skipped_and_listed(crm, demo_staff):
    admin(crm, "/admin/records/customers", {"records": [{"id": "CRM800001", "name": "坏数据", "branch": "XX99"}]})
    admin(crm, "/admin/records/trades", {"records": [{"id": "CRMT80000001", "customer": "NOPE", "product": "CRM0001",
                                                      "traded_at": "2026-01-02T00:00:00Z", "side": "buy",
                                                      "amount": "10"}]})
    run = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert run.status == CrmSyncRun.Status.DONE
    assert totals(run, "invalid") == {"products": 0, "customers": 1, "trades": 1}
    assert {(e["resource"], e["id"]) for e in run.errors} == {("customers", "CRM800001"), ("trades", "CRMT80000001")}
    assert not Customer.objects.filter(external_id="CRM800001").exists()


def test_an_unreachable_crm_is_a_failed_run(settings, db):
    settings.CRM_BASE_URL, settings.CRM_API_TOKEN = "http://127.0.0.1:9", "x"
    run = crm_sync_run(triggered_by="test")
    assert run.status == CrmSyncRun.Status.FAILED and "ConnectionError" in run.error


# --- the page ----------------------------------------------------------------------------------

def test_crm_page_lists_runs_and_queues_a_sync(client, admin_user, crm, demo_staff, monkeypatch,
                                               django_capture_on_commit_callbacks):
    from integrations import tasks

    crm.fail(count=1)
    crm_sync_run(triggered_by="test", page_size=PAGE)
    client.force_login(admin_user)
    page = client.get("/integrations/crm/")
    assert page.status_code == 200 and "立即同步".encode() in page.content and b"HTTP 500" in page.content
    queued = []
    monkeypatch.setattr(tasks.crm_sync, "delay", lambda *a: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/integrations/crm/")
    assert response.status_code == 302 and queued == [(f"manual:{admin_user.username}",)]


def test_crm_page_is_404_for_other_roles(client, operator):
    client.force_login(operator)
    assert client.get("/integrations/crm/").status_code == 404


def test_sandbox_runs_as_a_module():
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "integrations.crm.sandbox", "--port", "0", "--customers", "5",
                             "--token", crm_sandbox.DEFAULT_TOKEN],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        deadline = time.monotonic() + 10
        while True:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/api/products?limit=2", timeout=2,
                                    headers={"Authorization": f"Bearer {crm_sandbox.DEFAULT_TOKEN}"}).json()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
        assert len(body["data"]) == 2 and body["next_cursor"]
        assert json.dumps(body["data"][0])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.wall_clock("the CRM sandbox's seed trades carry fixed 2025 dates: 400 days on nobody has traded within "
                       "the 365-day tier window, so the full run has no thresholds to re-tier the new trade against")
def test_a_trade_arriving_by_crm_sync_moves_the_live_tile_and_re_tiers_the_client(
        crm, demo_staff, monkeypatch, django_capture_on_commit_callbacks):
    from django.utils import timezone

    from dashboards import live
    from tagging.models import CustomerTier
    from tagging.tiers import tier_run_compute

    crm_sync_run(triggered_by="test", page_size=PAGE)
    tier_run_compute()
    keys = list(live.client().scan_iter(match=f"{live.prefix()}:*", count=1000))
    if keys:
        live.client().delete(*keys)
    live.scope_day_rebuild(day=live.today(), scope_key="firm")
    before = int(live.client().hget(live.day_key(live.today(), "firm"), "trades") or 0)
    retiered = []
    from tagging.tiers import tier_run_incremental

    def tier_incremental_now(customer_ids):  # what the worker does with the task
        retiered.append(customer_ids)
        tier_run_incremental(customer_ids=customer_ids)

    monkeypatch.setattr("tagging.tasks.tier_incremental.delay", tier_incremental_now)
    monkeypatch.setattr("tagging.tasks.tag_rules_apply_all_task.delay", lambda **kw: None)
    admin(crm, "/admin/records/trades", {"records": [{
        "id": "CRMT77777777", "customer": "CRM000004", "product": "CRM0001", "side": "buy", "amount": "880000.00",
        "traded_at": timezone.now().isoformat()}]})
    with django_capture_on_commit_callbacks(execute=True):
        run = crm_sync_run(triggered_by="test", page_size=PAGE)
    assert totals(run, "created")["trades"] == 1
    customer = Customer.objects.get(external_id="CRM000004")
    assert retiered == [[customer.pk]]
    assert CustomerTier.objects.get(customer=customer).r == 0  # recency recomputed from today's trade
    assert int(live.client().hget(live.day_key(live.today(), "firm"), "trades")) == before + 1
