"""A web process holds at most DATABASE_POOL_MAX PostgreSQL connections however many requests it serves at once
(under ASGI every request thread used to keep one of its own, until PostgreSQL refused new clients), and every
request is answered."""

import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import requests
from django.db import connection

from conftest import ROOT, subprocess_env
from customers.tests.factories import CustomerFactory
from integrations.tests.api_support import branches, make_api_client  # noqa: F401
from tests.test_supervision import _free_port

POOL = 4


@pytest.fixture
def pooled_web(transactional_db, tmp_path):
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "uvicorn", "scrm.asgi:application", "--port", str(port),
                            "--no-access-log"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                           env=subprocess_env(SCRM_PROCESS="web", DATABASE_POOL_MAX=str(POOL)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/accounts/login/", timeout=5)
            break
        except OSError:
            assert web.poll() is None and time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
            time.sleep(0.2)
    yield url
    web.terminate()
    web.wait(15)
    log.close()


def _web_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scrm-web' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.slow
def test_forty_concurrent_requests_share_the_pool_and_all_succeed(pooled_web, make_api_client, branches):  # noqa: F811
    for i in range(30):
        CustomerFactory(branch=branches["BJ01"], external_id=f"P{i:03d}")
    key = make_api_client(name="load")[1].key
    peak, stop, statuses = [0], threading.Event(), []

    def watch():
        try:
            while not stop.is_set():
                peak[0] = max(peak[0], _web_connections())
                time.sleep(0.02)
        finally:
            connection.close()

    def client():
        with requests.Session() as session:
            for _ in range(5):
                statuses.append(session.get(f"{pooled_web}/api/v1/customers/?page_size=50", timeout=60,
                                            headers={"Authorization": f"Bearer {key}"}).status_code)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    clients = [threading.Thread(target=client) for _ in range(40)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    watcher.join()
    assert statuses.count(200) == 200, sorted(set(statuses))
    assert 1 <= peak[0] <= POOL, peak[0]
