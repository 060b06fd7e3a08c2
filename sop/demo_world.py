"""The demo journeys' replay (sop/demo.py): the real engine on a simulated clock, and the clients' side.

The clock advances by ``TICK`` from ``start`` to ``now``. At each tick the clients due to enter are enrolled
with their entry time (``enroll_queryset(now=…)``), what the clients do meanwhile is written with its own
time (planted demo behaviour, deterministic per client: a WeCom reply, finishing the account opening,
funding, a trade), then due step runs are claimed and executed as of the tick (``claim_due`` /
``execute_batch`` with ``now=``). Nothing is written with a time after ``now``.

Planted rates (the demo's "truth", like the signals in customers/demo_data.py):
- welcome: 45 % of new clients reply on WeCom within days 1–5 (the day-7 branch tags them);
- recall: 30 % finish opening within 40 h of the SMS, another 20 % after the advisor's call; 40 % of them fund;
- wake-up: 24 % of treated clients trade again within 3 weeks, 8 % of the hold-out (the uplift); 30 % reply.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone

from sop.demo import RECALL, REPLIED_TAG, TICK, WAKE, WELCOME, local_at

PRE_OPEN = ("id_uploaded", "password_set", "video_verified")
WELCOME_REPLIES = ("收到，谢谢老师！", "好的，有不懂的再请教您", "请问基金定投怎么设置？", "谢谢，新手课程已经在看了",
                   "这周比较忙，下周再聊")
WAKE_REPLIES = ("最近在忙，下周可以约一下", "好的，周四下午方便", "谢谢关心，账户先放着，有好的机会告诉我")
TRADE_PRODUCTS = ("SH510300", "OF000198", "SH600036", "OF110011")
CALL_OUTCOMES = (("reached", 45), ("interested", 20), ("not_reached", 25), ("not_interested", 10))


class Replay:
    def __init__(self, *, journeys: dict, start: datetime, now: datetime, segment=None):
        from customers.models import Product
        from sop.models import TradingDay

        self.journeys, self.start, self.now, self.segment = journeys, start, now, segment
        self.entries: list[tuple] = []
        self.events: list[tuple] = []
        self.seq = 0
        first, last = timezone.localdate(start) - timedelta(days=1), timezone.localdate(now) + timedelta(days=40)
        self.open_days = set(TradingDay.objects.filter(day__gte=first, day__lte=last, is_open=True)
                             .values_list("day", flat=True))
        self.products = list(Product.objects.filter(code__in=TRADE_PRODUCTS).order_by("code").values_list("pk", flat=True))

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Tick by tick, skipping the ticks where nothing can happen (no entry, no client action, no due step)."""
        self._plan_entries()
        self.stalled = self._stalled_times()
        previous, tick = None, self.start.replace(minute=self.start.minute // 30 * 30, second=0, microsecond=0)
        next_due = None
        while True:
            at = min(tick, self.now)
            busy = previous is None or (self.entries and self.entries[0][0] <= at) or (self.events and self.events[0][0] <= at) \
                or (next_due is not None and next_due <= at) or self._stall_due(previous, at)
            if busy or at >= self.now:
                self._enter(previous, at)
                self._world(at)
                next_due = self._drain(at)
                previous = at
            if at >= self.now:
                return
            tick += TICK

    def _drain(self, at) -> datetime | None:
        """Run what is due at ``at``; returns when the next step run of the replayed journeys is due."""
        from django.db.models import Min

        from sop.engine import claim_due, execute_batch
        from sop.models import StepRun

        for _ in range(100):  # each round runs the steps that became due at this moment (branch → message …)
            batches = claim_due(now=at)
            if not batches:
                break
            for batch in batches:
                execute_batch(batch, now=at)
        return StepRun.objects.filter(enrollment__journey__in=self.journeys.values(), status__in=["due", "failed"]) \
            .aggregate(m=Min("due_at"))["m"]

    # --- who enters when ------------------------------------------------------------------------

    def _plan_entries(self) -> None:
        from customers.models import Customer
        from segments.models import SegmentMember

        if WELCOME in self.journeys:
            new_contacts = (Customer.objects.filter(opened_at__gte=timezone.localdate(self.start),
                                                    opened_at__lte=timezone.localdate(self.now),
                                                    funnel_stage__in=["opened", "funded"])
                            .exclude(wecom_external_userid=None).values_list("pk", "opened_at", "wecom_external_userid"))
            for pk, opened, external_userid in new_contacts:
                at = local_at(opened, "09:30") + timedelta(minutes=random.Random(f"welcome:{pk}").randrange(600))
                if self.start <= at <= self.now:
                    self.entries.append((at, WELCOME, [pk], f"wecom_add:{external_userid}"))
        if WAKE in self.journeys and self.segment is not None:
            members = list(SegmentMember.objects.filter(segment=self.segment).values_list("customer_id", flat=True))
            at = local_at(timezone.localdate(self.start) + timedelta(days=1), "10:00")
            self.entries.append((at, WAKE, members, f"demo_segment:{self.segment.pk}"))
        self.entries.sort(key=lambda e: (e[0], e[1], e[3]))

    def _stalled_times(self) -> list[datetime]:
        """When the recall journey's scan can find someone: the stalled clients' last change + the hours."""
        from customers.models import Customer

        if RECALL not in self.journeys:
            return []
        trigger = self.journeys[RECALL].live_version.definition["trigger"]
        hours = timedelta(hours=trigger["hours"])
        return sorted(t + hours for t in Customer.objects.filter(
            funnel_stage=trigger["stage"], updated_at__gt=self.start - hours - timedelta(days=1),
            updated_at__lte=self.now - hours).values_list("updated_at", flat=True))

    def _stall_due(self, previous, at) -> bool:
        while self.stalled and previous is not None and self.stalled[0] <= previous:
            self.stalled.pop(0)
        return bool(self.stalled) and self.stalled[0] <= at

    def _enter(self, previous, at) -> None:
        from customers.models import Customer
        from sop.engine import enroll_queryset

        while self.entries and self.entries[0][0] <= at:
            when, name, ids, key = self.entries.pop(0)
            version = self.journeys[name].live_version
            enroll_queryset(version=version, customers=Customer.objects.filter(pk__in=ids), trigger_key=key, now=when)
            self._plan_world(name, key, when)
        if RECALL in self.journeys:  # the beat scan's window, tick by tick (the same trigger key as live)
            version = self.journeys[RECALL].live_version
            trigger = version.definition["trigger"]
            hours = timedelta(hours=trigger["hours"])
            lower = (previous or at - timedelta(days=1)) - hours
            stalled = Customer.objects.filter(funnel_stage=trigger["stage"], updated_at__gt=lower,
                                              updated_at__lte=at - hours)
            key = f"funnel_stalled:{trigger['stage']}"
            if enroll_queryset(version=version, customers=stalled, trigger_key=key, now=at):
                self._plan_world(RECALL, key, at)

    # --- what the clients do --------------------------------------------------------------------

    def _push(self, at: datetime, kind: str, customer_id: int, rng: random.Random) -> None:
        if at <= self.now:
            self.seq += 1
            heapq.heappush(self.events, (at, self.seq, kind, customer_id, rng.random()))

    def _plan_world(self, name: str, key: str, at: datetime) -> None:
        from sop.models import Enrollment

        rows = Enrollment.objects.filter(journey=self.journeys[name], trigger_key=key, entered_at=at)
        for customer_id, status in rows.values_list("customer_id", "status"):
            rng = random.Random(f"sop-demo:{name}:{customer_id}")
            hours = lambda low, high: timedelta(hours=rng.uniform(low, high))  # noqa: E731, B023
            if name == WELCOME and rng.random() < 0.45:
                self._push(at + hours(26, 110), "reply", customer_id, rng)
            elif name == RECALL:
                r = rng.random()
                opened = at + hours(5, 40) if r < 0.3 else at + hours(54, 150) if r < 0.5 else None
                if opened:
                    self._push(opened, "open", customer_id, rng)
                    if rng.random() < 0.4:
                        self._push(opened + hours(20, 72), "fund", customer_id, rng)
            elif name == WAKE:
                if rng.random() < (0.08 if status == Enrollment.Status.HOLDOUT else 0.24):
                    self._push(self._session_time(at + hours(24, 21 * 24), rng), "trade", customer_id, rng)
                if status != Enrollment.Status.HOLDOUT and rng.random() < 0.3:
                    self._push(at + hours(3, 60), "wake_reply", customer_id, rng)

    def _session_time(self, moment: datetime, rng: random.Random) -> datetime:
        day = timezone.localdate(moment)
        for _ in range(30):
            if (day in self.open_days) if self.open_days else day.weekday() < 5:
                break
            day += timedelta(days=1)
        minute = rng.randrange(220)  # 09:35–11:25 or 13:05–14:55
        start = local_at(day, "09:35") if minute < 110 else local_at(day, "13:05") - timedelta(minutes=110)
        return start + timedelta(minutes=minute)

    def _world(self, at: datetime) -> None:
        from customers.models import Customer, Touch, Trade

        touches = []
        while self.events and self.events[0][0] <= at:
            when, seq, kind, customer_id, draw = heapq.heappop(self.events)
            day = timezone.localdate(when)
            if kind in ("reply", "wake_reply"):
                texts = WELCOME_REPLIES if kind == "reply" else WAKE_REPLIES
                touches.append(Touch(customer_id=customer_id, channel=Touch.Channel.WECOM, direction=Touch.Direction.IN,
                                     content=texts[int(draw * len(texts))], status=Touch.Status.SENT, source="demo",
                                     occurred_at=when))
            elif kind == "open":
                Customer.objects.filter(pk=customer_id, funnel_stage__in=PRE_OPEN).update(
                    funnel_stage="opened", opened_at=day, updated_at=when, lifecycle_stage="activate")
                Customer.objects.filter(pk=customer_id, risk_level="").update(risk_level="C3", risk_assessed_at=day)
            elif kind == "fund":
                Customer.objects.filter(pk=customer_id, funnel_stage="opened").update(
                    funnel_stage="funded", updated_at=when, total_assets=round(5000 + draw * 95000, 2))
            elif kind == "trade" and self.products:
                Trade.objects.get_or_create(external_id=f"SOPDEMO-{customer_id}-{seq}", defaults={
                    "customer_id": customer_id, "product_id": self.products[int(draw * len(self.products))],
                    "traded_at": when, "side": "buy", "amount": round(10000 + draw * 90000, 2)})
        Touch.objects.bulk_create(touches)

    # --- the advisors' side, afterwards ---------------------------------------------------------

    def advisors_follow_up(self) -> None:
        """Tasks the replay created get their creation time, and the advisors have done most of those
        older than a day and a half (WeCom messages sent, calls made); tags keep the time they were added."""
        from customers.models import Task, Touch
        from sop.models import StepRun
        from tagging.models import CustomerTag, CustomerTagHistory

        runs = list(StepRun.objects.filter(enrollment__journey__in=self.journeys.values(),
                                           step_type__in=["task", "wecom_message"], detail__has_key="task_id")
                    .values_list("idempotency_key", "step_type", "finished_at", "detail", "touch_id"))
        tasks = Task.objects.in_bulk([detail["task_id"] for *_, detail, _ in runs])
        sent_touches = []
        for key, step_type, finished, detail, touch_id in runs:
            task = tasks.get(detail["task_id"])
            if task is None or finished is None:
                continue
            rng = random.Random(f"sop-demo-task:{key}")
            task.created_at = finished
            if finished + timedelta(hours=36) <= self.now and rng.random() < 0.85:
                task.status, task.completed_at = Task.Status.DONE, finished + timedelta(hours=rng.uniform(1, 20))
                if step_type == "wecom_message":
                    task.outcome, task.outcome_note = Task.Outcome.REACHED, "已在企业微信发送"
                    sent_touches.append(touch_id)
                else:
                    task.outcome = rng.choices([o for o, _ in CALL_OUTCOMES], [w for _, w in CALL_OUTCOMES])[0]
        Task.objects.bulk_update(list(tasks.values()), ["created_at", "status", "completed_at", "outcome",
                                                        "outcome_note"], batch_size=500)
        Touch.objects.filter(pk__in=[t for t in sent_touches if t], status=Touch.Status.QUEUED).update(
            status=Touch.Status.SENT)
        if WELCOME in self.journeys:
            evidence = f"SOP 旅程「{WELCOME}」"
            tagged = StepRun.objects.filter(enrollment__journey=self.journeys[WELCOME], step_type="tag_add",
                                            status=StepRun.Status.DONE)
            for customer_id, finished in tagged.values_list("enrollment__customer_id", "finished_at"):
                CustomerTagHistory.objects.filter(customer_id=customer_id, tag__code=REPLIED_TAG,
                                                  evidence=evidence).update(at=finished)
                CustomerTag.objects.filter(customer_id=customer_id, tag__code=REPLIED_TAG,
                                           evidence=evidence).update(created_at=finished)

    def summary(self) -> dict:
        from sop.models import Enrollment, StepRun

        result = {}
        for name, journey in self.journeys.items():
            enrollments = Enrollment.objects.filter(journey=journey)
            steps = StepRun.objects.filter(enrollment__journey=journey)
            result[name] = {
                "enrollments": dict(enrollments.values_list("status").annotate(n=Count("pk"))),
                "goals_met": enrollments.filter(goal_met_at__isnull=False).count(),
                "step_runs": dict(steps.values_list("status").annotate(n=Count("pk"))),
                "outcomes": dict(steps.exclude(outcome="").values_list("outcome").annotate(n=Count("pk"))),
            }
        return result
