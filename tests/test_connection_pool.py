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
from scrm.launcher import web_command
from tests.test_supervision import _free_port

POOL = 4


@pytest.fixture
def pooled_web(transactional_db, tmp_path):
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    web = subprocess.Popen(web_command(sys.executable, host="127.0.0.1", port=str(port)), cwd=ROOT, stdout=log,
                           stderr=subprocess.STDOUT,
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


@pytest.mark.slow
def test_open_dashboard_streams_do_not_hold_the_pool(pooled_web, make_api_client, branches, make_staff):  # noqa: F811
    """A wall screen keeps /dashboards/live/stream/ open for half an hour: twice as many streams as the pool has
    connections, and the rest of the product still answers at once."""
    _wall_user(make_staff)
    key = make_api_client(name="reader")[1].key
    session = requests.Session()
    session.get(f"{pooled_web}/accounts/login/", timeout=30)
    login = session.post(f"{pooled_web}/accounts/login/", timeout=30, allow_redirects=False, data={
        "username": "wall", "password": "correct-horse-42", "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert login.status_code == 302, login.text[-2000:]
    streams = []
    try:
        for _ in range(POOL * 2):
            stream = session.get(f"{pooled_web}/dashboards/live/stream/", stream=True, timeout=30)
            assert stream.status_code == 200  # not 503 after waiting for a connection the other streams hold
            streams.append(stream)
        for stream in streams:  # every stream sent its first tiles: each one got a connection when it needed one
            lines = stream.iter_lines()
            first = [next(lines) for _ in range(4)]
            assert any(line.startswith(b"event: tiles") for line in first), first
        answer = requests.get(f"{pooled_web}/api/v1/customers/", timeout=30, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.status_code
        assert _web_connections() <= POOL
    finally:
        for stream in streams:
            stream.close()
        session.close()


def _wall_user(make_staff):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    wall = make_staff("wall", "hq_manager")
    # the web process checks passwords with the production hashers, not the tests' fast one
    type(wall).objects.filter(pk=wall.pk).update(
        password=PBKDF2PasswordHasher().encode("correct-horse-42", PBKDF2PasswordHasher().salt()))
    return wall


def test_a_forged_forwarded_address_does_not_escape_the_login_lockout(pooled_web, make_staff):
    """The web process of make run trusts no X-Forwarded-For: after too many wrong passwords the account is locked
    for this client whatever address it claims, and the audit log records the real one."""
    from django.conf import settings

    from core.models import AuditLog

    _wall_user(make_staff)

    def attempt(password, forged):
        with requests.Session() as session:
            session.get(f"{pooled_web}/accounts/login/", timeout=30)
            return session.post(f"{pooled_web}/accounts/login/", timeout=30, allow_redirects=False,
                                headers={"X-Forwarded-For": forged},
                                data={"username": "wall", "password": password,
                                      "csrfmiddlewaretoken": session.cookies["csrftoken"]})

    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt("wrong-password-1", "9.9.9.9")
    assert attempt("correct-horse-42", "8.8.8.8").status_code != 302  # still locked out
    lockout = AuditLog.objects.filter(action="auth.lockout", target_id="wall").first()
    assert lockout is not None and lockout.ip_address == "127.0.0.1"
