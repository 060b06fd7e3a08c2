"""Live dashboard counters: Redis hashes per scope and day, increments after commit, snapshots, reconciliation.

Keys (``<prefix>`` = ``scrm:<database name>:dash``, so a test database never meets the product's counters):

* ``<prefix>:d:<YYYY-MM-DD>:<scope>`` — hash of the day's counters (selectors_live.DAY_FIELDS + h00…h23 trades per
  hour, ``_at`` = when it was built from the database). Scope keys: ``firm``, ``b<branch id>``, ``a<advisor id>``.
* ``<prefix>:s:<YYYY-MM-DD>:<scope>`` — set of today's active customer ids (its size is the 活跃客户 tile).
* ``<prefix>:tiers:<scope>`` / ``<prefix>:opp:<scope>`` — short-lived caches of the current-state tiles.
* channel ``<prefix>:live`` — JSON ``{"scopes": [...]}`` naming the scope keys whose numbers just changed
  (``"*"`` = all); the SSE view pushes fresh tiles to viewers of those scopes.

A day's hash is written whole from the database (``scope_day_rebuild``) or not at all; increments only touch a
hash that exists (a Lua script checks), so after Redis loses a key the next read rebuilds it from the database
instead of showing a partial count. Past days are invalidated, not incremented, when late data arrives for them.
The beat task ``dashboards.live_reconcile`` rewrites today for every scope every few minutes, which also
repairs the tiny race between an increment and a concurrent rebuild.
"""

from __future__ import annotations

import json
import logging
import time as clock
from collections import defaultdict
from datetime import date, timedelta
from functools import cache

import redis
from django.conf import settings
from django.utils import timezone

from core.events import (
    CustomersChanged,
    EventsIngested,
    StepRunsFinished,
    TagChanged,
    TaskCompleted,
    TierChanged,
    TradesIngested,
    WecomContactAdded,
    subscribe,
)
from dashboards import selectors_live as truth

logger = logging.getLogger(__name__)

TODAY_TTL = 3 * 24 * 3600  # seconds a day's hash/set lives after its last rebuild (today's)
PAST_TTL = 35 * 24 * 3600  # the 30-day range stays warm: yesterday is written for every scope after midnight
CURRENT_STATE_TTL = {"tiers": 900, "opp": 240}  # longer than the reconcile interval, which rewarms them

_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local added = 0
for j = 1, #ARGV, 2 do
  if ARGV[j] == '+' then
    added = added + redis.call('SADD', KEYS[2], ARGV[j + 1])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[j], ARGV[j + 1])
  end
end
if redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1])) end
return 1
"""

_SET_IF_EXISTS = """
local changed = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for j = 1, #ARGV, 2 do redis.call('HSET', key, ARGV[j], ARGV[j + 1]) end
    changed = changed + 1
  end
end
return changed
"""


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def prefix() -> str:
    return f"scrm:{settings.DATABASES['default']['NAME']}:dash"


def channel() -> str:
    return f"{prefix()}:live"


def day_key(day: date, scope_key: str) -> str:
    return f"{prefix()}:d:{day.isoformat()}:{scope_key}"


def set_key(day: date, scope_key: str) -> str:
    return f"{prefix()}:s:{day.isoformat()}:{scope_key}"


def today() -> date:
    return timezone.localdate()


def publish(scope_keys) -> None:
    scope_keys = sorted(set(scope_keys))
    if scope_keys:
        client().publish(channel(), json.dumps({"scopes": scope_keys}))


# --- writing: increments after commit, rebuilds from the database -----------------------------------------------

def counters_add(increments: dict[tuple[date, str], dict[str, int]], active: dict[tuple[date, str], set[int]]) -> None:
    """Add to today's counters (only where the day's hash exists); a past day's hashes are dropped so they are
    rebuilt from the database on the next read. Publishes the scopes touched."""
    now_day = today()
    keys = set(increments) | set(active)
    stale = [k for k in keys if k[0] != now_day]
    r = client()
    if stale:
        r.delete(*[day_key(d, s) for d, s in stale])
    script = r.register_script(_INCR_IF_EXISTS)
    pipe = r.pipeline(transaction=False)
    for day, scope_key in keys:
        if day != now_day:
            continue
        argv: list = []
        for field, amount in increments.get((day, scope_key), {}).items():
            if amount:
                argv += [field, int(amount)]
        for customer_id in active.get((day, scope_key), ()):
            argv += ["+", int(customer_id)]
        if argv:
            script(keys=[day_key(day, scope_key), set_key(day, scope_key)], args=argv, client=pipe)
    pipe.execute()
    publish(s for _d, s in keys)


def counters_set(values: dict[tuple[date, str], dict[str, int]]) -> None:
    """Overwrite some fields of existing day hashes (recomputed from the database, e.g. opened/funded)."""
    r = client()
    script = r.register_script(_SET_IF_EXISTS)
    pipe = r.pipeline(transaction=False)
    for (day, scope_key), fields in values.items():
        argv = [x for field, value in fields.items() for x in (field, int(value))]
        if argv:
            script(keys=[day_key(day, scope_key)], args=argv, client=pipe)
    pipe.execute()
    publish(s for _d, s in values)


def _write_day(pipe, day: date, scope_key: str, fields: dict, members: list[int] | None) -> None:
    key = day_key(day, scope_key)
    ttl = TODAY_TTL if members is not None else PAST_TTL
    mapping = {f: int(fields.get(f, 0)) for f in (*truth.DAY_FIELDS, *truth.HOUR_FIELDS)}
    mapping["_at"] = int(clock.time())
    pipe.delete(key, set_key(day, scope_key))
    if members is None:
        mapping["active"] = int(fields.get("active", 0))
    else:
        for start in range(0, len(members), 5000):
            pipe.sadd(set_key(day, scope_key), *members[start:start + 5000])
        pipe.expire(set_key(day, scope_key), ttl)
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, ttl)


def scope_day_rebuild(*, day: date, scope_key: str) -> None:
    """Rebuild one scope's day from the database (today with its active set)."""
    fields = truth.scope_days_truth(scope_key=scope_key, first=day, last=day)[day]
    members = None
    if day == today():
        members = [row[0] for row in truth.active_customer_rows(day=day, scope_key=scope_key)]
    pipe = client().pipeline(transaction=True)
    _write_day(pipe, day, scope_key, fields, members)
    pipe.execute()


def reconcile_day(*, day: date | None = None) -> int:
    """Rewrite a day's counters of the firm, every branch and every advisor from the database (set-based: one
    grouped query per tile); scopes with nothing that day get zeros. Publishes ``*``. Returns scopes written."""
    from core.models import Branch, User

    day = day or today()
    rolled = truth.rows_to_scopes(truth.day_rows(first=day, last=day))
    members: dict[str, list[int]] = defaultdict(list)
    is_today = day == today()
    if is_today:
        for customer_id, branch_id, advisor_id in truth.active_customer_rows(day=day):
            for key in truth.customer_scope_keys(branch_id, advisor_id):
                members[key].append(customer_id)
    scopes = {"firm"} | {f"b{pk}" for pk in Branch.objects.values_list("pk", flat=True)}
    scopes |= {f"a{pk}" for pk in User.objects.filter(role="advisor").values_list("pk", flat=True)}
    scopes |= {s for _d, s in rolled}
    pipe = client().pipeline(transaction=True)
    written = 0
    for scope_key in sorted(scopes):
        fields = rolled.get((day, scope_key), {})
        if not is_today and scope_key.startswith("a") and not any(fields.values()):
            continue  # an idle advisor's past day is cheap to rebuild on a miss; no need to keep zeros
        _write_day(pipe, day, scope_key, fields, members.get(scope_key, []) if is_today else None)
        written += 1
    pipe.execute()
    publish(["*"])
    return written


def past_days_warm(*, days: int = 30, limit: int = 3) -> list[date]:
    """Write up to ``limit`` of the last ``days`` past days that the firm has no cached counters for (e.g. after
    Redis was emptied), newest first, so 7/30-day ranges read Redis instead of computing on a page view."""
    pending = [today() - timedelta(days=i) for i in range(1, days + 1)]
    pipe = client().pipeline(transaction=False)
    for day in pending:
        pipe.exists(day_key(day, "firm"))
    missing = [day for day, cached in zip(pending, pipe.execute(), strict=True) if not cached]
    for day in missing[:limit]:
        reconcile_day(day=day)
    return missing[:limit]


def current_state_warm() -> None:
    """Recompute the tier and opportunity tiles of the firm and every branch (the expensive scopes), so a page
    never waits for them; advisors' are cheap and computed on demand."""
    from core.models import Branch

    r = client()
    for scope_key in ["firm", *[f"b{pk}" for pk in Branch.objects.values_list("pk", flat=True)]]:
        r.set(f"{prefix()}:tiers:{scope_key}", json.dumps(truth.tier_distribution(scope_key=scope_key)),
              ex=CURRENT_STATE_TTL["tiers"])
        r.set(f"{prefix()}:opp:{scope_key}", json.dumps(truth.opportunities_awaiting(scope_key=scope_key)),
              ex=CURRENT_STATE_TTL["opp"])


def current_state_invalidate(scope_keys, kinds=("tiers", "opp")) -> None:
    keys = [f"{prefix()}:{kind}:{s}" for kind in kinds for s in scope_keys]
    if keys:
        client().delete(*keys)


def tiers_invalidate_all() -> None:
    r = client()
    keys = list(r.scan_iter(match=f"{prefix()}:tiers:*", count=1000))
    if keys:
        r.delete(*keys)
    publish(["*"])


# --- reading ----------------------------------------------------------------------------------------------------

def _decode(raw: dict) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


def day_snapshot(*, scope_key: str, day: date) -> dict[str, int]:
    """One scope's counters for a day, rebuilt from the database first when Redis has none."""
    r = client()
    raw = r.hgetall(day_key(day, scope_key))
    if not raw:
        scope_day_rebuild(day=day, scope_key=scope_key)
        raw = r.hgetall(day_key(day, scope_key))
    fields = _decode(raw)
    if "active" not in fields:
        fields["active"] = r.scard(set_key(day, scope_key))
    return fields


def days_snapshot(*, scope_key: str, first: date, last: date) -> dict[date, dict[str, int]]:
    """Counters for each day of a range: cached days from Redis, the missing ones from one grouped query each
    tile (then cached). With Redis unreachable, straight from the database."""
    try:
        return _days_snapshot(scope_key=scope_key, first=first, last=last)
    except redis.RedisError:
        logger.warning("live dashboard: Redis unavailable, counting from the database")
        return truth.scope_days_truth(scope_key=scope_key, first=first, last=last)


def _days_snapshot(*, scope_key: str, first: date, last: date) -> dict[date, dict[str, int]]:
    r = client()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    pipe = r.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(day_key(day, scope_key))
        pipe.scard(set_key(day, scope_key))
    answers = pipe.execute()
    out, missing = {}, []
    for i, day in enumerate(days):
        raw, active = answers[2 * i], answers[2 * i + 1]
        if not raw:
            missing.append(day)
            continue
        fields = _decode(raw)
        fields.setdefault("active", active)
        out[day] = fields
    if missing:
        now_day = today()
        past = [d for d in missing if d != now_day]
        if past:
            computed = truth.scope_days_truth(scope_key=scope_key, first=min(past), last=max(past))
            pipe = r.pipeline(transaction=True)
            for day in past:
                _write_day(pipe, day, scope_key, computed[day], None)
                out[day] = computed[day]
            pipe.execute()
        if now_day in missing:
            out[now_day] = day_snapshot(scope_key=scope_key, day=now_day)
    return out


def _cached_json(kind: str, scope_key: str, compute):
    key = f"{prefix()}:{kind}:{scope_key}"
    try:
        raw = client().get(key)
    except redis.RedisError:
        return compute()
    if raw is not None:
        return json.loads(raw)
    value = compute()
    try:
        client().set(key, json.dumps(value), ex=CURRENT_STATE_TTL[kind])
    except redis.RedisError:
        pass
    return value


def tiers_snapshot(*, scope_key: str) -> list[dict]:
    return _cached_json("tiers", scope_key, lambda: truth.tier_distribution(scope_key=scope_key))


def opportunities_snapshot(*, scope_key: str) -> int:
    return _cached_json("opp", scope_key, lambda: truth.opportunities_awaiting(scope_key=scope_key))


def counters_invalidate(keys) -> None:
    """Drop day hashes (and active sets) so the next read rebuilds them from the database; publishes."""
    keys = set(keys)
    if keys:
        client().delete(*[k for d, s in keys for k in (day_key(d, s), set_key(d, s))])
        publish(s for _d, s in keys)


# --- hooks: registered in DashboardsConfig.ready(); they run after commit and never fail the change ---------------

def _never_raise(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the change committed; the reconcile task repairs the counters
            logger.exception("live dashboard hook %s failed", func.__name__)
            return None

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    return wrapper


def _local_date(moment) -> date:
    return timezone.localtime(moment).date()


def _grouped_by_scope(rows, add) -> None:
    for row in rows:
        for scope_key in truth.customer_scope_keys(row[0], row[1]):
            add(scope_key, *row[2:])


@_never_raise
def on_trades_ingested(event: TradesIngested) -> None:
    """New trades add to their day; changed ones invalidate it.
    Grouped in SQL (local day and hour there too), so a 10,000-row batch costs two small queries."""
    from customers.models import Trade

    created_ids, updated_ids = event.created_ids, event.updated_ids

    increments: dict = defaultdict(lambda: defaultdict(int))
    active: dict = defaultdict(set)
    invalid: set = set()
    day, hour = truth.local_day_sql("t.traded_at"), f"extract(hour FROM t.traded_at AT TIME ZONE '{truth.TZ}')::int"
    joined = f"FROM {Trade._meta.db_table} t JOIN customers_customer c ON c.id = t.customer_id WHERE t.id = ANY(%s)"
    if created_ids:
        def add(scope_key, d, h, n, fen):
            fields = increments[(d, scope_key)]
            fields["trades"] += n
            fields["amount_fen"] += int(fen)
            fields[f"h{h:02d}"] += n

        _grouped_by_scope(truth.fetch(f"SELECT c.branch_id, c.advisor_id, {day}, {hour}, count(*), "
                                      f"sum(round(t.amount * 100))::bigint {joined} GROUP BY 1, 2, 3, 4",
                                      [list(created_ids)]), add)
        _grouped_by_scope(truth.fetch(f"SELECT DISTINCT c.branch_id, c.advisor_id, {day}, t.customer_id {joined}",
                                      [list(created_ids)]), lambda k, d, cid: active[(d, k)].add(cid))
    if updated_ids:
        _grouped_by_scope(truth.fetch(f"SELECT DISTINCT c.branch_id, c.advisor_id, {day} {joined}", [list(updated_ids)]),
                          lambda k, d: invalid.add((d, k)))
        counters_invalidate(invalid)
        increments = {k: v for k, v in increments.items() if k not in invalid}
        active = {k: v for k, v in active.items() if k not in invalid}
    counters_add(increments, active)


@_never_raise
def on_events_ingested(event: EventsIngested) -> None:
    """A behaviour event makes its client active that day."""
    from customers.models import BehaviourEvent

    created_ids, updated_ids = event.created_ids, event.updated_ids

    active: dict = defaultdict(set)
    rows = truth.fetch(f"SELECT DISTINCT c.branch_id, c.advisor_id, {truth.local_day_sql('e.occurred_at')}, e.customer_id "
                       f"FROM {BehaviourEvent._meta.db_table} e JOIN customers_customer c ON c.id = e.customer_id "
                       f"WHERE e.id = ANY(%s)", [[*created_ids, *updated_ids]])
    _grouped_by_scope(rows, lambda k, d, cid: active[(d, k)].add(cid))
    counters_add({}, active)


@_never_raise
def on_contact_added(event: WecomContactAdded) -> None:
    """One more WeCom contact today."""
    from customers.models import Customer

    branch_id, advisor_id = Customer.objects.filter(pk=event.customer_id).values_list("branch_id", "advisor_id").get()
    keys = truth.customer_scope_keys(branch_id, advisor_id)
    counters_add({(today(), k): {"contacts": 1} for k in keys}, {})


@_never_raise
def on_customers_changed(event: CustomersChanged) -> None:
    """Recount today's opened/funded for the scopes of these customers (an opening date or funnel stage may
    have changed either way, so this sets rather than adds)."""
    from customers.models import Customer

    created_ids, updated_ids = event.created_ids, event.updated_ids

    keys = {"firm"}
    for branch_id, advisor_id in (Customer.objects.filter(pk__in=[*created_ids, *updated_ids])
                                  .values_list("branch_id", "advisor_id").distinct()):
        keys.update(truth.customer_scope_keys(branch_id, advisor_id))
    day = today()
    counts = truth.rows_to_scopes(truth.opened_rows(day=day))
    counters_set({(day, k): {f: counts.get((day, k), {}).get(f, 0) for f in ("opened", "funded")} for k in keys})


@_never_raise
def on_task_completed(event: TaskCompleted) -> None:
    """One more task done that day; the client was contacted."""
    from customers.models import Customer, Task

    task = Task.objects.get(pk=event.task_id)

    branch_id, advisor_id = Customer.objects.filter(pk=task.customer_id).values_list("branch_id", "advisor_id").get()
    keys = truth.customer_scope_keys(branch_id, advisor_id)
    current_state_invalidate(keys, kinds=("opp",))
    counters_add({(_local_date(task.completed_at or timezone.now()), k): {"tasks_done": 1} for k in keys}, {})


@_never_raise
def on_step_runs_finished(event: StepRunsFinished) -> None:
    """SOP touches sent or blocked."""
    from sop.models import StepRun

    run_ids = event.step_run_ids

    increments: dict = defaultdict(lambda: defaultdict(int))
    rows = (StepRun.objects.filter(pk__in=run_ids, finished_at__isnull=False)
            .values_list("status", "outcome", "finished_at", "enrollment__customer__branch_id",
                         "enrollment__customer__advisor_id"))
    for status, outcome, finished_at, branch_id, advisor_id in rows:
        field = ("sop_sent" if status == StepRun.Status.DONE and outcome in truth.SOP_SENT_OUTCOMES
                 else "sop_blocked" if status == StepRun.Status.BLOCKED else None)
        if field:
            for k in truth.customer_scope_keys(branch_id, advisor_id):
                increments[(_local_date(finished_at), k)][field] += 1
    if increments:
        counters_add(increments, {})


_opportunity_codes: dict = {"at": 0.0, "codes": frozenset()}


def _opportunity_tag_codes() -> frozenset:
    from tagging.models import Tag, TagCategory

    if clock.monotonic() - _opportunity_codes["at"] > 60:
        _opportunity_codes["codes"] = frozenset(
            Tag.objects.filter(category__kind=TagCategory.Kind.OPPORTUNITY).values_list("code", flat=True))
        _opportunity_codes["at"] = clock.monotonic()
    return _opportunity_codes["codes"]


@_never_raise
def on_tag_changed(event: TagChanged) -> None:
    """An opportunity tag added or removed changes 待跟进商机."""
    from customers.models import Customer

    customer_id, tag_code = event.customer_id, event.tag_code

    if tag_code not in _opportunity_tag_codes():
        return
    row = Customer.objects.filter(pk=customer_id).values_list("branch_id", "advisor_id").first()
    if row:
        keys = truth.customer_scope_keys(*row)
        current_state_invalidate(keys, kinds=("opp",))
        publish(keys)


@_never_raise
def on_tier_changed(event: TierChanged) -> None:
    """A tier run changed the distribution everywhere."""
    tiers_invalidate_all()


def subscriptions() -> None:
    """The live counters follow trades, events, customers, tasks, WeCom contacts, SOP, tags and tiers."""
    for event_type, handler in ((TradesIngested, on_trades_ingested), (EventsIngested, on_events_ingested),
                                (WecomContactAdded, on_contact_added), (CustomersChanged, on_customers_changed),
                                (TaskCompleted, on_task_completed), (StepRunsFinished, on_step_runs_finished),
                                (TagChanged, on_tag_changed), (TierChanged, on_tier_changed)):
        subscribe(event_type, handler)
