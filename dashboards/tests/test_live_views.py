"""The 看板 page and its event stream over the test client: each role sees its own scope's numbers, the pickers
validate, the wall mode and the trading-calendar warning show to whom they should."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory, ProductFactory, TradeFactory
from dashboards import live
from dashboards.tests.test_live import counters  # noqa: F401
from integrations.tests.api_support import branches  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def trades(counters, advisor, same_branch_advisor, other_branch_advisor):  # noqa: F811
    product = ProductFactory(code="510300")
    now = timezone.now()
    moment = max(now - timedelta(minutes=5), timezone.localtime(now).replace(hour=0, minute=0, second=1))
    for who, n in ((advisor, 1), (same_branch_advisor, 2), (other_branch_advisor, 4)):
        customer = CustomerFactory(advisor=who)
        for _ in range(n):
            TradeFactory(customer=customer, product=product, traded_at=moment, amount=Decimal("12345.00"))
    return product


def _tile(response, key):
    html = response.content.decode()
    match = re.search(rf'data-testid="tile-{key}-value">([^<]*)<', html)
    assert match, f"no tile {key}"
    return match.group(1)


def test_each_role_sees_its_own_scope(client, trades, advisor, branch_manager, hq_manager, other_branch_manager):
    expected = {advisor: "1", branch_manager: "3", other_branch_manager: "4", hq_manager: "7"}
    for user, count in expected.items():
        client.force_login(user)
        response = client.get("/dashboards/")
        assert response.status_code == 200
        assert _tile(response, "trades") == count, user
    client.force_login(hq_manager)
    assert _tile(client.get("/dashboards/"), "amount") == "¥8.64万"


def test_hq_picks_a_branch_and_others_have_no_picker(client, trades, hq_manager, branch_manager, other_branch_advisor):
    client.force_login(hq_manager)
    page = client.get("/dashboards/").content.decode()
    assert 'data-testid="branch-picker"' in page and "BJ01" in page and "SH01" in page
    shanghai = other_branch_advisor.branch_id
    assert _tile(client.get(f"/dashboards/?branch={shanghai}"), "trades") == "4"
    client.force_login(branch_manager)
    response = client.get(f"/dashboards/?branch={shanghai}")
    assert 'data-testid="branch-picker"' not in response.content.decode()
    assert _tile(response, "trades") == "3", "a branch manager cannot look at another branch"


def test_ranges_validate_and_sum_days(client, trades, hq_manager):
    client.force_login(hq_manager)
    assert _tile(client.get("/dashboards/?range=7d"), "trades") == "7"
    today = live.today()
    bad = client.get(f"/dashboards/?range=custom&start={today}&end={today - timedelta(days=3)}")
    assert "结束日期不能早于开始日期" in bad.content.decode()
    assert 'data-testid="filter-errors"' in bad.content.decode()
    future = client.get(f"/dashboards/?range=custom&start={today}&end={today + timedelta(days=1)}")
    assert "结束日期不能晚于今天" in future.content.decode()
    ok = client.get(f"/dashboards/?range=custom&start={today - timedelta(days=40)}&end={today - timedelta(days=1)}")
    assert _tile(ok, "trades") == "0"
    assert "历史区间" in ok.content.decode(), "a past range is not live"


def test_roles_without_the_dashboard_get_404_and_wall_mode_renders(client, compliance, operator, trades):
    client.force_login(compliance)
    assert client.get("/dashboards/").status_code == 404
    assert client.get("/dashboards/live/stream/").status_code == 404
    client.force_login(operator)
    wall = client.get("/dashboards/?wall=1")
    assert wall.status_code == 200
    assert "实时经营看板" in wall.content.decode() and _tile(wall, "trades") == "7"


def test_calendar_warning_for_operators_only(client, operator, hq_manager, counters):  # noqa: F811
    from sop.calendar import calendar_status
    from sop.models import TradingDay

    TradingDay.objects.filter(day__gt=live.today() + timedelta(days=20)).delete()
    assert calendar_status()["warning"]
    client.force_login(operator)
    assert 'data-testid="calendar-warning"' in client.get("/dashboards/").content.decode()
    client.force_login(hq_manager)
    assert 'data-testid="calendar-warning"' not in client.get("/dashboards/").content.decode()


def test_stream_under_wsgi_answers_one_event_for_the_viewers_scope(client, trades, advisor):
    client.force_login(advisor)
    response = client.get("/dashboards/live/stream/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    body = response.content.decode()
    assert body.startswith("retry: ")
    data = json.loads(body.split("data: ", 1)[1].split("\n", 1)[0])
    assert data["scope"] == f"a{advisor.pk}"
    assert data["tiles"]["trades"]["value"] == 1


def test_nav_shows_the_dashboard_to_managers_advisors_and_operators(client, advisor, operator, compliance, counters):  # noqa: F811
    for user, shown in ((advisor, True), (operator, True), (compliance, False)):
        client.force_login(user)
        home = client.get("/").content.decode()
        assert ('data-nav="dashboard"' in home) is shown, user


def test_redis_down_the_page_counts_from_the_database_and_ingestion_still_works(client, trades, hq_manager, settings,
                                                                              django_capture_on_commit_callbacks):
    from integrations.api_clients import api_client_create
    from integrations.models import ApiScope

    _client, key = api_client_create(actor=None, name="crm", scopes=[ApiScope.TRADES_WRITE])
    customer = CustomerFactory(external_id="DOWN-1")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    live.client.cache_clear()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            answer = client.post("/api/v1/trades/bulk/", json.dumps({"trades": [{
                "external_id": "T-DOWN", "customer": customer.external_id, "product": "510300", "side": "buy",
                "amount": "5", "traded_at": timezone.now().isoformat()}]}), content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}")
        assert answer.status_code == 200 and answer.json()["created"] == 1, "the hook must not fail the write"
        client.force_login(hq_manager)
        assert _tile(client.get("/dashboards/"), "trades") == "8"
    finally:
        live.client.cache_clear()


def test_deleting_the_redis_keys_and_reloading_shows_the_same_numbers(client, trades, hq_manager):
    client.force_login(hq_manager)
    from dashboards.views_live import TILES

    keys = [k for k, *_r in TILES]
    page = client.get("/dashboards/")
    before = {k: _tile(page, k) for k in keys}
    week = {k: _tile(client.get("/dashboards/?range=7d"), k) for k in ("trades", "amount", "active")}
    redis_keys = list(live.client().scan_iter(match=f"{live.prefix()}:*"))
    assert redis_keys
    live.client().delete(*redis_keys)  # Redis restarted empty
    page = client.get("/dashboards/")
    assert {k: _tile(page, k) for k in keys} == before
    assert {k: _tile(client.get("/dashboards/?range=7d"), k) for k in ("trades", "amount", "active")} == week


def test_a_branch_by_code_works_and_a_bad_one_says_what_is_wrong(client, hq_manager, branches):  # noqa: F811
    client.force_login(hq_manager)
    page = client.get("/dashboards/?branch=SH01").content.decode()
    assert 'data-testid="filter-errors"' not in page and '<option value="' in page and '" selected>上海营业部' in page
    page = client.get("/dashboards/?branch=XX99").content.decode()
    assert "营业部“XX99”不存在" in page and "时间范围" not in page
    page = client.get("/dashboards/?range=custom&start=2026-01-02&end=2026-01-01").content.decode()
    assert "结束日期不能早于开始日期" in page
