"""Bench: REST ingestion through real HTTP — customers bulk upsert and behaviour events bulk — against a
baseline that POSTs the same rows one by one to a plain DRF ModelSerializer view.

    .venv/bin/python bench/api_ingest.py [--customers 5000] [--events 20000] [--baseline 1000]

Starts uvicorn in a subprocess on a free port, on its own embedded PostgreSQL under
``.data/bench-api``. The baseline view lives only in this module's urlconf (the server imports this
file as its ASGI app), never in the application. The baseline gets no auth, no scoping and no
audit, so the ratio flatters it. Prints rows/s of each path and the ratio.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SCRM_DATA_DIR", str(ROOT / ".data" / "bench-api"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.generics import CreateAPIView  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402

from core.models import Branch  # noqa: E402
from customers.models import BehaviourEvent, Customer  # noqa: E402

# --- the baseline: one row per request through a ModelSerializer (bench only) ------------------

class BaselineCustomerSerializer(serializers.ModelSerializer):
    branch = serializers.SlugRelatedField(slug_field="code", queryset=Branch.objects.all())

    class Meta:
        model = Customer
        fields = ["external_id", "name", "branch", "risk_level", "channel", "total_assets", "funnel_stage"]


class BaselineEventSerializer(serializers.ModelSerializer):
    customer = serializers.SlugRelatedField(slug_field="external_id", queryset=Customer.objects.all())

    class Meta:
        model = BehaviourEvent
        fields = ["event_id", "customer", "type", "occurred_at", "properties"]


class BaselineCustomerCreate(CreateAPIView):
    serializer_class = BaselineCustomerSerializer
    permission_classes = [AllowAny]
    authentication_classes = []


class BaselineEventCreate(CreateAPIView):
    serializer_class = BaselineEventSerializer
    permission_classes = [AllowAny]
    authentication_classes = []


def _urlpatterns():
    from scrm.urls import urlpatterns as app_patterns

    return [path("bench/customers/", BaselineCustomerCreate.as_view()),
            path("bench/events/", BaselineEventCreate.as_view()), *app_patterns]


if os.environ.get("BENCH_API_SERVER") == "1":  # imported by uvicorn: serve the app plus the baseline
    from django.core.asgi import get_asgi_application

    urlpatterns = _urlpatterns()
    settings.ROOT_URLCONF = __name__
    application = get_asgi_application()


# --- the driver ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_start(port: int) -> subprocess.Popen:
    from django.db import connection

    from conftest import database_url

    env = {**os.environ, "BENCH_API_SERVER": "1", "DATABASE_URL": database_url(connection.settings_dict),
           "REDIS_URL": settings.REDIS_URL, "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "scrm.settings"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api_ingest:application", "--app-dir", str(ROOT / "bench"),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    sys.exit("uvicorn did not start")


def post(conn, url: str, body, headers: dict) -> dict:
    conn.request("POST", url, json.dumps(body), {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{url} answered {response.status}: {data[:300]!r}")
    return json.loads(data) if data else {}


def rows_per_second(fn, rows: int) -> float:
    started = time.perf_counter()
    fn()
    return rows / (time.perf_counter() - started)


def rss_mb(pid: int) -> float:
    """Resident memory of the web process (Linux /proc), to show it stays flat across batches."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--baseline", type=int, default=1000, help="rows the one-by-one baseline saves")
    args = parser.parse_args()

    from django.core.management import call_command

    from integrations.api_clients import api_client_create

    call_command("migrate", verbosity=0, skip_checks=True)
    Branch.objects.get_or_create(code="BENCH", defaults={"name": "压测营业部"})
    run = uuid.uuid4().hex[:8]
    _client, key = api_client_create(actor=None, name=f"bench-{run}", scopes=["customers:write", "events:write"],
                                     rate_limit_per_minute=1_000_000)
    auth = {"Authorization": f"Bearer {key}"}
    customers = [{"external_id": f"B{run}{i:07d}", "name": f"压测{i}", "branch": "BENCH", "risk_level": "C3",
                  "channel": "app", "total_assets": f"{i}.00", "funnel_stage": "opened"} for i in range(args.customers)]
    now = "2025-06-01T10:00:00+08:00"
    events = [{"event_id": f"E{run}{i:08d}", "customer": customers[i % len(customers)]["external_id"], "type": "app_login",
               "occurred_at": now, "properties": {"n": i}} for i in range(args.events)]

    port = free_port()
    proc = server_start(port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

        def bulk(url, key_name, rows, batch):
            for start in range(0, len(rows), batch):
                result = post(conn, url, {key_name: rows[start:start + batch]}, auth)
                assert not result["errors"], result["errors"][:3]

        customers_bulk = rows_per_second(lambda: bulk("/api/v1/customers/bulk_upsert/", "customers", customers, 5000),
                                         len(customers))
        rss_before = rss_mb(proc.pid)
        events_bulk = rows_per_second(lambda: bulk("/api/v1/events/bulk/", "events", events, 10000), len(events))
        again = [{**e, "event_id": "R" + e["event_id"]} for e in events]
        bulk("/api/v1/events/bulk/", "events", again, 10000)
        rss_after = rss_mb(proc.pid)

        n = min(args.baseline, len(customers))
        base_customers = [{**c, "external_id": "X" + c["external_id"]} for c in customers[:n]]
        base_events = [{**e, "event_id": "X" + e["event_id"]} for e in events[:n]]

        def one_by_one(url, rows):
            for row in rows:
                post(conn, url, row, {})

        customers_base = rows_per_second(lambda: one_by_one("/bench/customers/", base_customers), n)
        events_base = rows_per_second(lambda: one_by_one("/bench/events/", base_events), n)
    finally:
        proc.terminate()
        proc.wait(15)

    print(f"customers: bulk {customers_bulk:,.0f} rows/s ({len(customers):,} rows) vs one-by-one ModelSerializer "
          f"{customers_base:,.0f} rows/s ({n:,} rows) → {customers_bulk / customers_base:.1f}×")
    print(f"events:    bulk {events_bulk:,.0f} rows/s ({len(events):,} rows) vs one-by-one ModelSerializer "
          f"{events_base:,.0f} rows/s ({n:,} rows) → {events_bulk / events_base:.1f}×")
    print(f"web process memory: {rss_before:,.0f} MB before {2 * len(events):,} more event rows, "
          f"{rss_after:,.0f} MB after ({rss_after - rss_before:+,.0f} MB)")


if __name__ == "__main__":
    main()
