"""The churn score's backtest on the seeded demo data: scores as of the start of last quarter (earlier data
only) against the churn that followed. The demo plants churners (clients who stop trading a few months after
funding, and whose App use fades 45 days later); high scores must churn far more often than low ones."""

from datetime import date

import pytest
from django.core.cache import cache

from dashboards import churn

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TODAY = date(2026, 11, 23)


@pytest.fixture(autouse=True)
def _fresh_people_cache():
    cache.delete_many([churn.SUMMARY_KEY, churn.BACKTEST_KEY])
    yield
    cache.delete_many([churn.SUMMARY_KEY, churn.BACKTEST_KEY])


@pytest.fixture
def demo(db):
    from customers.demo_data import seed_demo

    return seed_demo(customers=4000, seed=7, today=TODAY)


def test_quarter_bounds():
    assert churn.quarter_bounds(date(2026, 11, 23)) == (date(2026, 7, 1), date(2026, 10, 1))
    assert churn.quarter_bounds(date(2026, 2, 1)) == (date(2025, 10, 1), date(2026, 1, 1))


def test_last_quarters_high_scores_churned_far_more_than_low_ones(demo, client, hq_manager):
    result = churn.churn_backtest_compute(today=TODAY)
    assert (result["as_of"], result["until"]) == (date(2026, 7, 1), date(2026, 10, 1))
    assert result["population"] > 700 and result["churned"] > 30
    levels = result["levels"]
    assert levels["high"]["n"] > 15
    assert levels["high"]["rate"] > 4 * levels["low"]["rate"]
    assert levels["high"]["rate"] > levels["medium"]["rate"] > levels["low"]["rate"]
    assert result["precision_high"] > 2 * result["base_rate"]
    top, bottom = result["deciles"][0], result["deciles"][-1]
    assert top["rate"] > 3 * result["base_rate"] and top["lift"] > 3
    assert bottom["rate"] < result["base_rate"]

    client.force_login(hq_manager)
    body = client.get("/dashboards/analyses/churn/").content.decode()
    assert f"{100 * result['precision_high']:.1f}%" in body and body.count('data-testid="decile-row"') == 10
