"""A receiver that hangs or fails cannot hold up anything else: deliveries have their own queue and worker with a
short connect timeout, and a receiver that keeps failing is paused (circuit breaker), visibly, then tried again."""

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import ROOT, subprocess_env
from core.models import AuditLog
from integrations import webhooks
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.tests.http_receiver import receiver_start
from integrations.webhooks import BREAKER_THRESHOLD, webhook_delivery_attempt, webhook_event_emit

Status = WebhookDelivery.Status


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: connecting is refused at once


def _subscribe(url: str, name: str) -> WebhookSubscription:
    return WebhookSubscription.objects.create(name=name, url=url, event_types=["task.completed"],
                                              secret_encrypted=webhooks.crypto.encrypt("s3cret"))


@pytest.mark.django_db
def test_a_receiver_that_keeps_failing_is_paused_then_resumed(settings, client, admin_user):
    port = _closed_port()
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{port}"]
    down = _subscribe(f"http://127.0.0.1:{port}/hook", "停机的系统")
    for i in range(BREAKER_THRESHOLD + 2):
        webhook_event_emit(event_type="task.completed", payload={"n": i})
    deliveries = list(WebhookDelivery.objects.filter(subscription=down).order_by("pk"))
    for delivery in deliveries[:BREAKER_THRESHOLD]:
        assert webhook_delivery_attempt(delivery_id=delivery.pk).status == Status.RETRYING
    down.refresh_from_db()
    assert down.consecutive_failures == BREAKER_THRESHOLD and down.paused_until > timezone.now()
    # the others are not tried while the breaker is open: not claimed, and an attempt already queued waits
    WebhookDelivery.objects.filter(subscription=down).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhooks.webhook_deliveries_claim_due() == []
    assert webhook_delivery_attempt(delivery_id=deliveries[-1].pk) is None
    waiting = WebhookDelivery.objects.get(pk=deliveries[-1].pk)
    assert waiting.attempts == 0 and waiting.next_attempt_at == down.paused_until

    client.force_login(admin_user)
    page = client.get("/integrations/webhooks/").content.decode()
    assert f'data-testid="webhook-paused-{down.pk}"' in page and f"连续失败 {BREAKER_THRESHOLD} 次" in page
    assert client.post(f"/integrations/webhooks/{down.pk}/resume/").status_code == 302
    down.refresh_from_db()
    assert (down.consecutive_failures, down.paused_until) == (0, None)
    assert len(webhooks.webhook_deliveries_claim_due()) == len(deliveries)
    assert AuditLog.objects.filter(action="webhook.resume", target_id=str(down.pk)).exists()


@pytest.mark.django_db
def test_a_success_closes_the_breaker(settings):
    receiver, server = receiver_start()
    try:
        settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{server.server_address[1]}"]
        subscription = _subscribe(receiver.url, "时好时坏")
        receiver.statuses = [500] * BREAKER_THRESHOLD
        for i in range(BREAKER_THRESHOLD + 1):
            webhook_event_emit(event_type="task.completed", payload={"n": i})
        for delivery in WebhookDelivery.objects.filter(subscription=subscription).order_by("pk"):
            WebhookSubscription.objects.filter(pk=subscription.pk).update(paused_until=None)  # as the pause ran out
            webhook_delivery_attempt(delivery_id=delivery.pk)
        subscription.refresh_from_db()
        assert (subscription.consecutive_failures, subscription.paused_until) == (0, None)
    finally:
        server.shutdown()
        server.server_close()


def _hanging_server():
    """Accepts connections and never answers (a receiver stuck in a long GC pause, say)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    return sock.getsockname()[1], lambda: (stop.set(), [c.close() for c in held], sock.close())


def _worker(name: str, queues: str, env: dict, log_path):
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller through the process
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", queues, "-c", "2", "-l",
                                "INFO", "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, log


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sop_work_and_healthy_receivers_are_not_delayed_by_a_hanging_one(tmp_path, monkeypatch):
    from integrations import tasks
    from scrm.celery import app

    # queues of this test's own (the session's worker must not take these messages), used like the real ones
    sop_queue, hooks_queue = f"sop-{os.getpid()}", f"webhooks-{os.getpid()}"
    monkeypatch.setattr(tasks.webhook_deliver, "delay",
                        lambda *args: tasks.webhook_deliver.apply_async(args, queue=hooks_queue))
    hang_port, hang_stop = _hanging_server()
    healthy, server = receiver_start()
    allow = f"127.0.0.1:{hang_port},127.0.0.1:{server.server_address[1]}"
    env = subprocess_env(OUTBOUND_ALLOWLIST=allow)
    workers = [_worker("main", sop_queue, env, tmp_path / "main.log"),
               _worker("hooks", hooks_queue, env, tmp_path / "hooks.log")]
    try:
        for name in ("main", "hooks"):
            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5, destination=[f"{name}-{os.getpid()}@{os.uname().nodename}"]):
                assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()[-3000:]

        def sop_round_trip() -> float:
            started = time.monotonic()
            app.send_task("sop.noop", queue=sop_queue).get(timeout=60)
            return time.monotonic() - started

        baseline = min(sop_round_trip() for _ in range(3))
        stuck = _subscribe(f"http://127.0.0.1:{hang_port}/hook", "挂起的系统")
        fine = _subscribe(healthy.url, "正常的系统")
        for i in range(10):
            webhook_event_emit(event_type="task.completed", payload={"n": i})  # on commit: 20 deliveries queued
        time.sleep(1)  # both delivery slots are now stuck on the hanging receiver
        during = max(sop_round_trip() for _ in range(3))
        assert during < baseline + 2.0, (baseline, during)
        # the healthy receiver gets all ten while the hanging one times out and is paused
        assert healthy.wait_for(10, timeout=60), len(healthy.requests)
        deadline = time.monotonic() + 15
        while WebhookDelivery.objects.filter(subscription=fine, status=Status.SUCCEEDED).count() < 10:
            assert time.monotonic() < deadline, "the healthy receiver's deliveries were not all recorded"
            time.sleep(0.2)
        stuck.refresh_from_db()
        assert stuck.paused_until is not None
    finally:
        for process, log in workers:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
        hang_stop()
        server.shutdown()
        server.server_close()
