"""Bench: SOP dispatch — enroll a segment's clients in a one-step SMS journey and send through 2 real Celery
workers to the provider sandbox, beside the rate of the same number of no-op Celery tasks in the same run.

    .venv/bin/python bench/sop_dispatch.py [--clients 100000] [--workers 2] [--customers 1000000]

Runs on the bench database (.data/bench, seeded like bench/customers_list.py). The segment is 「bench: 派发」
(clients in C2–C5); the first --clients of its members are enrolled. What it prints:
  * enrollment time (one INSERT … SELECT for enrollments and first steps),
  * dispatch: touches/s from the first claim to the last step done (beat's tick is run here in a loop),
  * the baseline: the same number of ``sop.noop`` tasks through the same workers,
  * duplicates: touches per client > 1, and resends the provider deduplicated.
Aims (the SOP issue): enrollment < 30 s, ≥ 1,000 touches/s and ≥ 50 % of the no-op rate, zero duplicates.
Everything the run writes (journey, enrollments, step runs, touches) is deleted at the end.
"""

import argparse
import os
import subprocess
import sys
import time

import _common

_common.django_setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402

from scrm import embedded  # noqa: E402

JOURNEY = "bench: 派发"


def _workers(n: int, env: dict) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", "sop", "-c", "2", "-l",
                              "WARNING", "-n", f"bench{i}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
                             cwd=_common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(n)]


def _wait_ready(names: list[str]) -> None:
    from scrm.celery import app

    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=1) or []) < len(names):
        if time.monotonic() > deadline:
            sys.exit("the bench workers did not start")


def _cleanup() -> None:
    """Remove what a run (or an interrupted earlier one) wrote: journey, enrollments, step runs, touches."""
    from sop.models import Journey, MessageTemplate, StepRun

    for journey in Journey.objects.filter(name=JOURNEY):
        StepRun.objects.filter(enrollment__journey=journey).delete()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM customers_touch WHERE source = %s", [f"sop:{journey.pk}"])
        Journey.objects.filter(pk=journey.pk).update(live_version=None)
        journey.enrollments.all().delete()
        journey.delete()
    MessageTemplate.objects.filter(name=JOURNEY).delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    _common.dataset_ensure(customers=args.customers, seed=42)
    _cleanup()

    from customers.models import Customer, Touch
    from segments.models import Segment, SegmentMember
    from segments.services import segment_rebuild
    from sop import tasks
    from sop.engine import claim_due, enroll_queryset
    from sop.models import GuardPolicy, MessageTemplate, StepRun, TemplateVersion
    from sop.provider_sandbox import sandbox_serve
    from sop.services import journey_create, journey_publish

    segment, _ = Segment.objects.get_or_create(name="bench: 派发", defaults={"rule": {
        "type": "attribute", "field": "risk_level", "op": "in", "value": ["C2", "C3", "C4", "C5"]}})
    if not segment.rebuilt_at:
        segment_rebuild(segment_id=segment.pk, requested_by="bench")
    sandbox, server = sandbox_serve(token="bench")
    env = {**os.environ, "DATABASE_URL": embedded.postgres_url(), "REDIS_URL": settings.REDIS_URL,
           "MESSAGING_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}", "MESSAGING_API_TOKEN": "bench"}
    GuardPolicy.objects.update_or_create(pk=1, defaults={"quiet_start": "00:00", "quiet_end": "00:00", "caps": {}})
    template = MessageTemplate.objects.create(name=JOURNEY, channel="sms")
    TemplateVersion.objects.create(template=template, number=1, body="{name}您好", status="approved")
    journey = journey_create(actor=None, name=JOURNEY, definition={
        "trigger": {"type": "manual"}, "start": "a", "steps": [{"id": "a", "type": "sms", "template": template.pk}]})
    version = journey_publish(actor=None, journey=journey)
    workers = _workers(args.workers, env)
    try:
        _wait_ready([f"bench{i}" for i in range(args.workers)])
        members = SegmentMember.objects.filter(segment=segment).order_by("customer_id").values("customer_id")
        started = time.perf_counter()
        entered = enroll_queryset(version=version, trigger_key="bench",
                                  customers=Customer.objects.filter(pk__in=members[:args.clients]))
        enroll_s = time.perf_counter() - started
        print(f"enrolled {entered:,} clients of 「{segment.name}」 in {enroll_s:.1f} s", flush=True)

        started = time.perf_counter()
        while StepRun.objects.filter(enrollment__journey=journey).exclude(status__in=["done", "dead", "blocked"]).exists():
            for batch in claim_due(limit=20_000):
                tasks.execute_batch.delay(batch)
            time.sleep(0.2)
        dispatch_s = time.perf_counter() - started
        touches = Touch.objects.filter(source=f"sop:{journey.pk}")
        sent = touches.count()
        duplicates = touches.values("customer_id").annotate(n=Count("pk")).filter(n__gt=1).count()

        started = time.perf_counter()
        results = [tasks.noop.delay() for _ in range(entered)]
        for result in results:
            result.get(timeout=600)
        noop_s = time.perf_counter() - started
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)
        server.shutdown()

    rate, noop_rate = sent / dispatch_s, entered / noop_s
    state = sandbox.state()
    print(f"dispatch: {sent:,} touches in {dispatch_s:.1f} s = {rate:,.0f} touches/s "
          f"(provider accepted {state['accepted'].get('sms', 0):,}, resends deduplicated {state['duplicates']})")
    print(f"baseline: {entered:,} no-op tasks in {noop_s:.1f} s = {noop_rate:,.0f} tasks/s "
          f"→ dispatch is {rate / noop_rate:.0%} of the no-op rate")
    print(f"duplicates: {duplicates} clients with more than one touch")
    checks = [("enrollment < 30 s", enroll_s < 30), ("≥ 1,000 touches/s", rate >= 1000),
              ("≥ 50 % of no-op", rate >= 0.5 * noop_rate), ("zero duplicates", duplicates == 0)]
    print("  ".join(f"{name}: {'PASS' if ok else 'MISS'}" for name, ok in checks))

    _cleanup()

if __name__ == "__main__":
    main()
