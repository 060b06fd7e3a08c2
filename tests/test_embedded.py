"""Both ways to reach the data stores: embedded servers from Python packages, or given URLs."""

import subprocess
import sys
import time

import pytest

from conftest import ROOT, subprocess_env

PROBE = """
import django, json
django.setup()
from django.core.cache import cache
from django.db import connection
from django.conf import settings
with connection.cursor() as cur:
    cur.execute("SELECT version(), current_database()")
    version, db = cur.fetchone()
cache.set("probe", "pong", 30)
print(json.dumps({"version": version, "db": db, "cache": cache.get("probe"), "broker": settings.CELERY_BROKER_URL}))
"""


def _probe(env):
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def _postgres_running_in(path) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any("postgres -D " + str(path) in line for line in out.splitlines())


@pytest.mark.slow
def test_embedded_servers_start_from_python_packages_and_stop_after(tmp_path):
    env = subprocess_env(SCRM_DATA_DIR=str(tmp_path), SCRM_EMBEDDED_START="1")  # as make run's launcher is
    del env["DATABASE_URL"], env["REDIS_URL"]
    found = _probe(env)
    assert found["version"].startswith("PostgreSQL 18")
    assert found["db"] == "scrm" and found["cache"] == "pong"
    assert found["broker"].startswith("redis+socket://") and str(tmp_path) in found["broker"]
    assert (tmp_path / "pg" / "PG_VERSION").exists()
    deadline = time.monotonic() + 10
    while _postgres_running_in(tmp_path / "pg") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postgres_running_in(tmp_path / "pg"), "the process that started PostgreSQL must stop it"
    # data survives: a second start reuses the same cluster
    assert _probe(env)["db"] == "scrm"


@pytest.mark.django_db
def test_given_urls_are_used_and_nothing_is_started(tmp_path):
    from django.db import connection

    env = subprocess_env(SCRM_DATA_DIR=str(tmp_path))
    found = _probe(env)
    assert found["db"] == connection.settings_dict["NAME"]
    assert found["cache"] == "pong"
    assert not (tmp_path / "pg").exists(), "no embedded PostgreSQL may start when DATABASE_URL is set"
    assert not list(tmp_path.glob("redis*")), "no embedded Redis may start when REDIS_URL is set"
