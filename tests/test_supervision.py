"""`make run` heals itself: its launcher is started as a user would (no demo data, a data dir of its own), then
each process is killed with SIGKILL in turn — web, Celery worker, beat, a sandbox, Redis, PostgreSQL — and the
product answers again within 30 s with nothing lost: a customer written before the kills is still there, and work
queued while the worker and then Redis were down is done once they are back. And `manage.py` with the launcher
stopped says the servers are not running instead of starting empty ones."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BACK_WITHIN = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "SCRM_ENV", "SCRM_EMBEDDED_START")}
    env.update(SCRM_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="scrm.settings", **extra)
    return env


def _manage(data_dir: Path, code: str) -> str:
    """Run Python in `manage.py shell` against the running launcher's servers (it joins them)."""
    done = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=ROOT, env=_env(data_dir),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _state(data_dir: Path) -> dict:
    return json.loads((data_dir / "run" / "supervision.json").read_text())


def _wait(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError, KeyError, requests.RequestException) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")


def _healthy(base: str) -> bool:
    response = requests.get(f"{base}/healthz", timeout=3)
    return response.status_code == 200 and response.json()["status"] == "ok"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("make-run")
    port = _free_port()
    log = open(data_dir / "launcher.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "scrm.launcher"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=_env(data_dir, SCRM_DEMO="0", PORT=str(port)), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(base), "the first start", 240)
        yield {"dir": data_dir, "base": base, "process": process}
    finally:
        process.send_signal(signal.SIGHUP)  # the terminal closed: stopped in order, like Ctrl-C
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        left = subprocess.run(["pgrep", "-f", f"(redis-server|celerybeat-schedule).*{data_dir}"], capture_output=True,
                              text=True).stdout.split()
        assert process.returncode == 0 and left == [], f"left running after SIGHUP: {left}"


def _redis_pids(data_dir: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"redis-server.*{data_dir}"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def _kill_child(launcher, name: str) -> None:
    before = _state(launcher["dir"])["processes"][name]
    os.kill(before["pid"], signal.SIGKILL)
    started = time.monotonic()
    _wait(lambda: _state(launcher["dir"])["processes"][name]["restarts"] > before["restarts"]
          and _state(launcher["dir"])["processes"][name]["running"], f"{name} restarted", BACK_WITHIN)
    _wait(lambda: _healthy(launcher["base"]), f"healthy after killing {name}", BACK_WITHIN - (time.monotonic() - started))


@pytest.mark.wall_clock("under libfaketime the rebuild queued before Redis is killed was once not run within 60 s of "
                       "the restart (cause not found yet; see the closing note of 2026-12-07); it runs on the real clock")
def test_every_process_and_server_comes_back_and_nothing_is_lost(launcher):
    data_dir, base = launcher["dir"], launcher["base"]
    customer = _manage(data_dir, "from customers.tests.factories import CustomerFactory; "
                                 "print(CustomerFactory(external_id='KEEP-1', name='重启前的客户').pk)")

    for name in ("web", "beat", "crm", "sms", "wecom"):
        _kill_child(launcher, name)

    # the worker is down while work is queued; then Redis dies with the message in it
    worker = _state(data_dir)["processes"]["worker"]
    os.kill(worker["pid"], signal.SIGSTOP)  # hold it so it cannot take the message before Redis dies
    segment = _manage(data_dir, (
        "from core.models import User; from segments.services import segment_create; "
        "u = User.objects.create(username='op-sup', role='operator'); "
        "s = segment_create(actor=u, name='重启测试', rule={'op': 'and', 'rules': [{'type': 'attribute', "
        "'field': 'total_assets', 'op': 'gte', 'value': 0}]}); print(s.pk)"))
    time.sleep(5)  # the AOF is written within a second, two when fsync lags on a busy disk
    os.kill(worker["pid"], signal.SIGKILL)
    os.kill(_redis_pids(data_dir)[0], signal.SIGKILL)
    started = time.monotonic()
    _wait(lambda: _state(data_dir)["servers"]["redis"]["restarts"] >= 1, "redis restarted", BACK_WITHIN)
    _wait(lambda: _healthy(base), "healthy after killing the worker and Redis", BACK_WITHIN - (time.monotonic() - started))
    rebuilt = _wait(lambda: _manage(data_dir, f"from segments.models import SegmentRebuild; print(SegmentRebuild"
                                              f".objects.filter(segment_id={segment}, status='done').count())") == "1",
                    "the rebuild queued before the kills", 60)
    assert rebuilt

    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    started = time.monotonic()
    _wait(lambda: _state(data_dir)["servers"]["postgres"]["restarts"] >= 1, "postgres restarted", BACK_WITHIN)
    _wait(lambda: _healthy(base), "healthy after killing PostgreSQL", BACK_WITHIN - (time.monotonic() - started))
    assert _manage(data_dir, f"from customers.models import Customer; print(Customer.objects.get(pk={customer}).name)") \
        == "重启前的客户"
    # a paused Redis is not a dead one: no second server starts on the same socket and append-only file
    paused, restarts = _redis_pids(data_dir), _state(data_dir)["servers"]["redis"]["restarts"]
    assert len(paused) == 1
    os.kill(paused[0], signal.SIGSTOP)
    time.sleep(6)  # three of the supervisor's server checks
    os.kill(paused[0], signal.SIGCONT)
    assert _redis_pids(data_dir) == paused
    assert _state(data_dir)["servers"]["redis"]["restarts"] == restarts
    _wait(lambda: _healthy(base), "healthy after Redis was paused", BACK_WITHIN)
    health = requests.get(f"{base}/healthz", timeout=3).json()
    restarts = {name: p["restarts"] for name, p in health["supervision"]["processes"].items()}
    assert all(restarts[name] >= 1 for name in ("web", "beat", "crm", "sms", "wecom", "worker")), restarts


def test_manage_py_without_the_launcher_says_how_to_start_it(tmp_path):
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "is not running" in done.stderr and "make run" in done.stderr
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis.sock").exists()  # nothing was started
