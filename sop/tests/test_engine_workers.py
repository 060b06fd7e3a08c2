"""Real Celery workers on the real broker: kill -9 one in the middle of a 10,000-touch run, start
another, and every due touch still happens exactly once (at the provider and in our records)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db.models import Count

from conftest import subprocess_env
from core.crypto import blind_index, encrypt, mask_mobile
from customers.models import Customer, Touch
from sop.engine import enroll_queryset
from sop.models import GuardPolicy, StepRun

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("SOP_KILL_TEST_N", "10000"))


def _worker(name, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", "sop", "-c", "2", "-l", "WARNING",
         "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _purge_sop_queue():
    from scrm.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("sop")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_9_a_worker_mid_run_and_every_touch_still_happens_exactly_once(provider, sop_kit, advisor, settings,
                                                                             tmp_path):
    from sop import tasks

    settings.SOP_CLAIM_TIMEOUT = 20
    GuardPolicy.objects.update(quiet_start="00:00", quiet_end="00:00", caps={})  # whatever the time of day
    mobiles = [f"139{i:08d}" for i in range(N)]
    Customer.objects.bulk_create([
        Customer(external_id=f"K{i:06d}", name=f"客户{i}", branch=advisor.branch, advisor=advisor, risk_level="C3",
                 mobile_encrypted=encrypt(m), mobile_hash=blind_index(m), mobile_masked=mask_mobile(m))
        for i, m in enumerate(mobiles)], batch_size=2000)
    journey = sop_kit["publish"]([{"id": "a", "type": "sms", "template": sop_kit["sms"].template_id}])
    assert enroll_queryset(version=journey.live_version, customers=Customer.objects.all(), trigger_key="bulk") == N

    _purge_sop_queue()
    env = subprocess_env(MESSAGING_BASE_URL=provider.url, MESSAGING_API_TOKEN="t0k", SOP_CLAIM_TIMEOUT="20")
    log = open(tmp_path / "workers.log", "w")  # noqa: SIM115
    first, second = _worker("doomed", env, log), None
    try:
        deadline = time.monotonic() + float(os.environ.get("SOP_KILL_TEST_SECONDS", "240"))
        touched_at_kill = None
        while time.monotonic() < deadline:
            tasks.tick()  # what beat does every few seconds
            done = Touch.objects.count()
            if touched_at_kill is None and done >= N // 6:
                os.killpg(first.pid, signal.SIGKILL)  # no goodbye: claimed batches stay claimed
                first.wait(10)
                touched_at_kill = done
                second = _worker("restarted", env, log)
            if not StepRun.objects.exclude(status="done").exists():
                break
            time.sleep(0.5)
        assert touched_at_kill is not None and touched_at_kill < N, "the worker was killed in the middle of the run"
        assert not StepRun.objects.exclude(status="done").exists(), (tmp_path / "workers.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        log.close()

    state = provider.state()
    assert state["accepted"] == {"sms": N}  # each client got exactly one SMS at the provider
    assert len(state["keys"]) == N
    assert Touch.objects.count() == N
    assert not Touch.objects.values("customer_id").annotate(n=Count("pk")).filter(n__gt=1).exists()
