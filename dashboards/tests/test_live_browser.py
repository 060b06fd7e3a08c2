"""THE live test: the product under a real uvicorn (ASGI, as `make run` serves it) against the test database; a
manager's open 看板 page changes its tile within 2 s of a trade or event posted through the REST API, without a
reload. Also: a branch manager's event stream carries their branch's changes and not another branch's."""

import json
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path

import pytest
from django.utils import timezone

from conftest import ROOT, subprocess_env
from customers.tests.factories import CustomerFactory, ProductFactory
from dashboards.tests.test_live import counters  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHOTS = Path("/tmp/helpers/dashlive")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "scrm.asgi:application", "--port", str(port), "--no-access-log",
               "--timeout-graceful-shutdown", "2"]
    web = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=5)
            break
        except urllib.error.HTTPError:
            break  # 503 without a worker: the server answers
        except (urllib.error.URLError, ConnectionError):
            assert web.poll() is None and time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
            time.sleep(0.2)
    yield url
    web.terminate()
    try:
        web.wait(15)
    except subprocess.TimeoutExpired:
        web.kill()
        web.wait(5)
    log.close()


@pytest.fixture
def shop(counters, advisor, other_branch_advisor):  # noqa: F811
    from integrations.api_clients import api_client_create
    from integrations.models import ApiScope

    ProductFactory(code="510300")
    CustomerFactory(external_id="BJ-1", advisor=advisor)
    CustomerFactory(external_id="BJ-2", advisor=advisor)
    CustomerFactory(external_id="SH-1", advisor=other_branch_advisor)
    _client, key = api_client_create(actor=None, name="crm", scopes=[ApiScope.TRADES_WRITE, ApiScope.EVENTS_WRITE])
    return key


def _post(url, key, path, body):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert answer["errors"] == [], answer
    return answer


def _trade(external_id, customer, amount="1000.00"):
    moment = max(timezone.now() - timedelta(seconds=30), timezone.localtime().replace(hour=0, minute=0, second=1))
    return {"trades": [{"external_id": external_id, "customer": customer, "product": "510300", "side": "buy",
                        "amount": amount, "traded_at": moment.isoformat()}]}


def _login(context, url, client, user):
    """The session of a logged-in user (the login form itself is covered by the core tests)."""
    client.force_login(user)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": url}])
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def _wait_text(page, selector, text, timeout_ms):
    page.wait_for_function("([s, t]) => document.querySelector(s) && document.querySelector(s).textContent.trim() === t",
                           arg=[selector, text], timeout=timeout_ms)


@pytest.mark.browser
def test_a_trade_posted_through_the_api_changes_the_open_dashboard_within_2_seconds(browser, asgi_server, shop,
                                                                                   branch_manager, client):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        page = _login(context, asgi_server, client, branch_manager)
        page.goto(asgi_server + "/dashboards/")
        page.wait_for_selector("[data-testid=nav]")
        _wait_text(page, "[data-testid=live-status]", "实时", 10_000)
        assert page.inner_text("[data-testid=tile-trades-value]") == "0"
        page.evaluate("window.__notReloaded = true")

        started = time.monotonic()
        _post(asgi_server, shop, "/api/v1/trades/bulk/", _trade("T-1", "BJ-1", "52000.00"))
        _wait_text(page, "[data-testid=tile-trades-value]", "1", 2_000)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
        assert page.inner_text("[data-testid=tile-amount-value]") == "¥5.20万"
        assert page.inner_text("[data-testid=tile-active-value]") == "1"

        # a behaviour event of another client of the branch: 活跃客户 goes up, still without a reload
        started = time.monotonic()
        _post(asgi_server, shop, "/api/v1/events/bulk/", {"events": [
            {"event_id": "E-1", "customer": "BJ-2", "type": "app_login", "occurred_at": timezone.now().isoformat()}]})
        _wait_text(page, "[data-testid=tile-active-value]", "2", 2_000)
        assert time.monotonic() - started < 2.0

        # another branch's trade does not move this branch's tiles
        _post(asgi_server, shop, "/api/v1/trades/bulk/", _trade("T-SH", "SH-1"))
        page.wait_for_timeout(1_200)
        assert page.inner_text("[data-testid=tile-trades-value]") == "1"
        assert page.evaluate("window.__notReloaded === true"), "the page must not reload"
        page.wait_for_timeout(1_600)  # let the highlight fade before the picture
        page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

        page.goto(asgi_server + "/dashboards/?wall=1")
        _wait_text(page, "[data-testid=live-status]", "实时", 10_000)
        _post(asgi_server, shop, "/api/v1/trades/bulk/", _trade("T-2", "BJ-2", "1500.00"))
        _wait_text(page, "[data-testid=tile-trades-value]", "2", 2_000)
        page.wait_for_timeout(1_600)
        page.screenshot(path=str(SHOTS / "wall.png"), full_page=True)
    finally:
        context.close()


def _stream_events(url, session_id, events: queue.Queue, stop: threading.Event):
    host, port = url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=60)
    connection.request("GET", "/dashboards/live/stream/", headers={"Cookie": f"sessionid={session_id}",
                                                                   "Accept": "text/event-stream"})
    response = connection.getresponse()
    events.put(("status", response.status))
    event = None
    while not stop.is_set():
        line = response.readline().decode()
        if not line:
            break
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: ") and event:
            events.put((event, json.loads(line[6:])))
            event = None
    connection.close()


def test_a_branch_managers_stream_carries_only_their_branchs_changes(asgi_server, shop, branch_manager, client):
    client.force_login(branch_manager)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_stream_events, daemon=True,
                              args=(asgi_server, client.cookies["sessionid"].value, events, stop))
    reader.start()
    assert events.get(timeout=15) == ("status", 200)
    kind, first = events.get(timeout=15)
    assert kind == "tiles" and first["scope"] == f"b{branch_manager.branch_id}"
    assert first["tiles"]["trades"]["value"] == 0

    _post(asgi_server, shop, "/api/v1/trades/bulk/", _trade("T-SH", "SH-1"))
    with pytest.raises(queue.Empty):
        events.get(timeout=2)  # nothing for Beijing

    started = time.monotonic()
    _post(asgi_server, shop, "/api/v1/trades/bulk/", _trade("T-BJ", "BJ-1"))
    kind, pushed = events.get(timeout=2)
    assert kind == "tiles" and time.monotonic() - started < 2.0
    assert pushed["tiles"]["trades"]["value"] == 1
    stop.set()
