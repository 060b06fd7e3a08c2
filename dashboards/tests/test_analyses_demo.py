"""On the demo data set (customers.demo_data.seed_demo) the analyses find the signals the generator planted:
people drop out at every funnel step, reading more than 5 news items in the first 30 days is the magic number for
a second trade, and 抖音信息流 (most sign-ups, least assets) lands in the low-contribution quadrant."""

import pytest
from django.db import transaction
from django.utils import timezone

from customers.demo_data import seed_demo
from dashboards.analyses.common import current_month, month_add
from dashboards.analyses.refresh import analyses_refresh

N = 5000
WHOLE_HISTORY = {"start": f"{month_add(current_month(), -36):%Y-%m}", "end": f"{current_month():%Y-%m}"}


@pytest.fixture(scope="module")
def demo_once(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        seed_demo(customers=N, seed=11, today=timezone.localdate())
        analyses_refresh(full=True)
        yield
        transaction.set_rollback(True)


@pytest.fixture
def demo(demo_once, db):
    return demo_once


def test_every_page_renders_for_hq_and_a_branch_manager(client, demo, hq_manager, branch_manager):
    for user in (hq_manager, branch_manager):
        client.force_login(user)
        for page in ("funnel", "cohorts", "magic", "channels"):
            response = client.get(f"/dashboards/analyses/{page}/")
            assert response.status_code == 200, (user, page)
            assert b'data-testid="chart"' in response.content, (user, page)
            assert client.get(f"/dashboards/analyses/{page}.csv").status_code == 200


def test_the_funnel_loses_people_at_every_step(client, demo, hq_manager):
    client.force_login(hq_manager)
    steps = client.get("/dashboards/analyses/funnel/").context["report"]["steps"]
    reached = [s["reached"] for s in steps]
    assert reached[0] > 500
    assert all(a > b > 0 for a, b in zip(reached, reached[1:], strict=False)), reached
    assert all(s["step_rate"] < 0.97 for s in steps[1:])


def test_more_than_five_news_items_is_the_magic_number_for_a_second_trade(client, demo, hq_manager):
    client.force_login(hq_manager)
    report = client.get("/dashboards/analyses/magic/", {**WHOLE_HISTORY, "behaviour": "news",
                                                        "outcome": "second_trade"}).context["report"]
    assert report["threshold"] is not None, [(b["clients"], b["rate_text"]) for b in report["buckets"]]
    assert report["threshold"]["threshold"] == 6  # "more than 5"
    assert report["threshold"]["rate_above"] > 2 * report["threshold"]["rate_below"]


def test_the_bad_channel_is_in_the_low_contribution_quadrant(client, demo, hq_manager):
    client.force_login(hq_manager)
    report = client.get("/dashboards/analyses/channels/").context["report"]
    channels = {c["channel"]: c for c in report["channels"]}
    douyin = channels["抖音信息流"]
    assert douyin["quadrant"] == "problem"  # the most sign-ups, below-median assets per sign-up
    assert douyin["signups"] == max(c["signups"] for c in channels.values())
    assert douyin["contribution"] == min(c["contribution"] for c in channels.values())
    assert channels["老客推荐"]["quadrant"] in ("star", "potential")
    assert douyin["bounce"] > channels["老客推荐"]["bounce"]
