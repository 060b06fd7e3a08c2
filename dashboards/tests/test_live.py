"""Live dashboard counters against the database truth, per tile and scope: increments after real writes (API
trades/events/customers, task completion, WeCom contact added, SOP engine), reconciliation after Redis loses keys,
and past days invalidated rather than patched."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.events import TagChanged
from customers.models import Customer
from customers.tests.factories import CustomerFactory, ProductFactory, TaskFactory, TradeFactory
from dashboards import live
from dashboards import selectors_live as truth
from integrations.tests.api_support import api, branches, make_api_client  # noqa: F401
from sop.tests.conftest import client_of, provider, sop_kit  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def counters(db):
    def wipe():
        keys = list(live.client().scan_iter(match=f"{live.prefix()}:*", count=1000))
        if keys:
            live.client().delete(*keys)

    wipe()
    yield live
    wipe()


@pytest.fixture
def world(branches, advisor, same_branch_advisor, other_branch_advisor):  # noqa: F811
    product = ProductFactory(code="510300")
    return {
        "mine": CustomerFactory(external_id="BJ-A", advisor=advisor),
        "colleague": CustomerFactory(external_id="BJ-B", advisor=same_branch_advisor),
        "unassigned": CustomerFactory(external_id="BJ-C", branch=branches["BJ01"]),
        "shanghai": CustomerFactory(external_id="SH-A", advisor=other_branch_advisor),
        "product": product,
    }


def _scopes(world):
    mine, sh = world["mine"], world["shanghai"]
    return ["firm", f"b{mine.branch_id}", f"b{sh.branch_id}", f"a{mine.advisor_id}",
            f"a{world['colleague'].advisor_id}", f"a{sh.advisor_id}"]


def _local_now():
    return timezone.localtime()


def _earlier_today(minutes):
    """A moment earlier today (local), never before midnight."""
    now = _local_now()
    return max(now - timedelta(minutes=minutes), now.replace(hour=0, minute=0, second=1, microsecond=0))


def _assert_counters_equal_truth(world):
    day = live.today()
    for scope_key in _scopes(world):
        expected = truth.scope_days_truth(scope_key=scope_key, first=day, last=day)[day]
        got = live.day_snapshot(scope_key=scope_key, day=day)
        got.pop("_at", None)
        assert got == expected, scope_key


def test_every_kpi_counts_live_and_matches_the_database(counters, world, api, advisor, django_capture_on_commit_callbacks):  # noqa: F811
    from customers.services import task_complete

    mine, sh = world["mine"], world["shanghai"]
    # before the counters exist: a trade, a due task
    TradeFactory(customer=mine, product=world["product"], traded_at=_earlier_today(30), amount=Decimal("100.00"))
    due = TaskFactory(customer=mine, assignee=advisor, due_at=_local_now().replace(hour=23, minute=59))
    live.reconcile_day()

    with django_capture_on_commit_callbacks(execute=True):
        answer = api.post("/api/v1/trades/bulk/", {"trades": [
            {"external_id": "T-1", "customer": "BJ-A", "product": "510300", "side": "buy", "amount": "2500.50",
             "traded_at": _earlier_today(5).isoformat()},
            {"external_id": "T-2", "customer": "SH-A", "product": "510300", "side": "sell", "amount": "80000",
             "traded_at": _earlier_today(4).isoformat()}]})
    assert answer.json()["created"] == 2
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/events/bulk/", {"events": [
            {"event_id": "E-1", "customer": "BJ-B", "type": "app_login", "occurred_at": _earlier_today(3).isoformat()},
            {"event_id": "E-2", "customer": "BJ-A", "type": "news_read", "occurred_at": _earlier_today(2).isoformat()}]})
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/customers/bulk_upsert/", {"customers": [
            {"external_id": "NEW-1", "name": "新客户", "branch": "BJ01", "advisor": "E9001", "risk_level": "C3",
             "opened_at": live.today().isoformat(), "funnel_stage": "funded"},
            {"external_id": "NEW-2", "name": "新客户二", "branch": "BJ01", "risk_level": "C3",
             "opened_at": live.today().isoformat(), "funnel_stage": "opened"}]})
    with django_capture_on_commit_callbacks(execute=True):
        task_complete(user=advisor, task=due, outcome="reached")
    _wecom_contact_added(world["colleague"])

    firm = live.day_snapshot(scope_key="firm", day=live.today())
    assert (firm["trades"], firm["amount_fen"], firm["active"]) == (3, 10000 + 250050 + 8000000, 3)
    assert (firm["opened"], firm["funded"], firm["tasks_done"], firm["contacts"]) == (2, 1, 1, 1)
    mine_scope = live.day_snapshot(scope_key=f"a{mine.advisor_id}", day=live.today())
    assert (mine_scope["trades"], mine_scope["active"], mine_scope["opened"], mine_scope["tasks_done"]) == (2, 1, 1, 1)
    assert live.day_snapshot(scope_key=f"a{sh.advisor_id}", day=live.today())["trades"] == 1
    _assert_counters_equal_truth(world)


def _wecom_contact_added(customer):
    """What integrations.wecom.events.contact_added leaves behind, then its hooks after commit."""
    from integrations.wecom.models import ContactFollow, ExternalContact

    contact = ExternalContact.objects.create(external_userid=f"wm-{customer.pk}", customer=customer,
                                             match_status=ExternalContact.Match.MATCHED)
    ContactFollow.objects.create(contact=contact, userid="advisor", added_at=timezone.now())
    from core.events import WecomContactAdded, registry

    assert "dashboards.live.on_contact_added" in next(r for r in registry() if r["event"] == "WecomContactAdded")[
        "subscribers"]
    live.on_contact_added(WecomContactAdded(customer_id=customer.pk, contact_id=contact.pk, contact_way_id=None,
                                            userid="advisor", at=timezone.now()))


def test_sop_step_runs_count_as_sent_and_blocked(counters, provider, sop_kit, client_of, advisor,  # noqa: F811
                                                  django_capture_on_commit_callbacks):
    from sop.engine import claim_due, enroll_queryset, execute_batch

    noon = _local_now().replace(hour=12, minute=0, second=0, microsecond=0)  # today, outside quiet hours
    journey = sop_kit["publish"]([
        {"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id, "next": "pitch"},
        {"id": "pitch", "type": "sms", "template": sop_kit["fund_sms"].template_id},  # R4 fund to C3 clients: blocked
    ])
    customers = [client_of(i) for i in range(3)]
    live.reconcile_day()
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                    trigger_key="manual:1", now=noon)
    for _round in range(2):
        for batch in claim_due(now=noon):
            with django_capture_on_commit_callbacks(execute=True):  # the hooks run after commit
                execute_batch(batch, now=noon)
    scope = f"a{advisor.pk}"
    got = live.day_snapshot(scope_key=scope, day=live.today())
    assert (got["sop_sent"], got["sop_blocked"]) == (3, 3)
    expected = truth.scope_days_truth(scope_key=scope, first=live.today(), last=live.today())[live.today()]
    assert {k: got[k] for k in ("sop_sent", "sop_blocked", "sop_replied")} == {
        k: expected[k] for k in ("sop_sent", "sop_blocked", "sop_replied")}


def test_sop_reply_within_48_hours_counts_as_replied(counters, provider, sop_kit, client_of, advisor):  # noqa: F811
    from customers.models import Touch
    from sop.engine import claim_due, enroll_queryset, execute_batch

    noon = _local_now().replace(hour=12, minute=0, second=0, microsecond=0)
    journey = sop_kit["publish"]([{"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id}])
    customers = [client_of(i) for i in range(2)]
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                    trigger_key="manual:1", now=noon)
    for batch in claim_due(now=noon):
        execute_batch(batch, now=noon)
    Touch.objects.create(customer=customers[0], channel="sms", direction="in", content="好的，谢谢",
                         occurred_at=noon + timedelta(minutes=30))
    Touch.objects.create(customer=customers[1], channel="wecom", direction="in", content="客户添加了企业微信",
                         source="wecom_add", occurred_at=noon + timedelta(minutes=30))
    live.reconcile_day()
    got = live.day_snapshot(scope_key=f"a{advisor.pk}", day=live.today())
    assert (got["sop_sent"], got["sop_replied"]) == (2, 1)


def test_lost_keys_are_rebuilt_from_the_database_and_increments_never_create_partial_counts(
        counters, world, api, django_capture_on_commit_callbacks):  # noqa: F811
    TradeFactory(customer=world["mine"], product=world["product"], traded_at=_earlier_today(20))
    live.reconcile_day()
    before = {s: live.day_snapshot(scope_key=s, day=live.today()) for s in _scopes(world)}
    keys = list(live.client().scan_iter(match=f"{live.prefix()}:*"))
    live.client().delete(*keys)  # Redis restarted empty
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/trades/bulk/", {"trades": [
            {"external_id": "T-9", "customer": "SH-A", "product": "510300", "side": "buy", "amount": "10",
             "traded_at": _earlier_today(1).isoformat()}]})
    assert not live.client().exists(live.day_key(live.today(), "firm")), "an increment must not create a partial hash"
    after = {s: live.day_snapshot(scope_key=s, day=live.today()) for s in _scopes(world)}
    assert after["firm"]["trades"] == before["firm"]["trades"] + 1
    assert after[f"a{world['mine'].advisor_id}"]["trades"] == before[f"a{world['mine'].advisor_id}"]["trades"] == 1
    _assert_counters_equal_truth(world)


def test_reconcile_task_corrects_drift_and_is_on_beat(counters, world, settings):
    from dashboards.tasks_live import live_reconcile

    assert settings.CELERY_BEAT_SCHEDULE["dashboards.live_reconcile"]["task"] == "dashboards.live_reconcile"
    live.reconcile_day()
    live.client().hincrby(live.day_key(live.today(), "firm"), "trades", 41)  # drift (e.g. a lost race)
    TradeFactory(customer=world["shanghai"], product=world["product"], traded_at=_earlier_today(1))  # no hook ran
    TradeFactory(customer=world["mine"], product=world["product"], traded_at=timezone.now() - timedelta(days=2))
    live_reconcile()
    assert live.day_snapshot(scope_key="firm", day=live.today())["trades"] == 1
    two_days_ago = timezone.localtime(timezone.now() - timedelta(days=2)).date()
    cached = live.client().hgetall(live.day_key(two_days_ago, "firm"))
    assert cached and int(cached[b"trades"]) == 1, "recent past days are warmed for the range views"
    _assert_counters_equal_truth(world)


def test_a_late_trade_for_a_past_day_invalidates_that_day(counters, world, api, django_capture_on_commit_callbacks):  # noqa: F811
    yesterday = live.today() - timedelta(days=1)
    first = live.days_snapshot(scope_key="firm", first=yesterday - timedelta(days=2), last=live.today())
    assert first[yesterday]["trades"] == 0
    moment = timezone.localtime().replace(hour=10) - timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/trades/bulk/", {"trades": [
            {"external_id": "T-Y", "customer": "BJ-A", "product": "510300", "side": "buy", "amount": "1",
             "traded_at": moment.isoformat()}]})
    again = live.days_snapshot(scope_key="firm", first=yesterday - timedelta(days=2), last=live.today())
    assert again[yesterday]["trades"] == 1 and again[yesterday]["h10"] == 1
    assert again[yesterday]["active"] == 1


def test_current_state_tiles_tiers_and_opportunities(counters, world, advisor):
    from customers.services import note_create
    from tagging.models import Tag
    from tagging.services import customer_tag_add
    from tagging.tiers import tier_run_compute

    TradeFactory(customer=world["mine"], product=world["product"], traded_at=timezone.now() - timedelta(days=3))
    tier_run_compute(requested_by="test")
    tiers = live.tiers_snapshot(scope_key=f"a{advisor.pk}")
    assert sum(t["count"] for t in tiers) == 1
    assert sum(t["count"] for t in live.tiers_snapshot(scope_key="firm")) == 4

    margin = Tag.objects.get(code="margin_intent")
    assert live.opportunities_snapshot(scope_key=f"a{advisor.pk}") == 0
    from django.db import transaction

    with transaction.atomic():
        customer_tag_add(customer=world["mine"], tag=margin, source="manual", actor="test", evidence="想开两融")
    # subscribers run after commit; in a test transaction call it as commit would
    live.on_tag_changed(TagChanged(customer_id=world["mine"].pk, tag_code="margin_intent", action="added",
                                   source="manual"))
    assert live.opportunities_snapshot(scope_key=f"a{advisor.pk}") == 1
    assert live.opportunities_snapshot(scope_key=f"b{world['shanghai'].branch_id}") == 0
    note_create(author=advisor, customer=world["mine"], body="已电话联系，约下周面谈")
    live.current_state_invalidate([f"a{advisor.pk}"], kinds=("opp",))
    assert live.opportunities_snapshot(scope_key=f"a{advisor.pk}") == 0, "a contact after the tag follows it up"
