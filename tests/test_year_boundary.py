"""Every date-dependent rule and screen on the last minute of 2026 and the first minute of 2027, Shanghai time
(15:59 and 16:01 UTC: a rule that takes its day or month from UTC puts these moments in the wrong year).

The clock is set with time-machine, so the product's own "now" (timezone.now / localdate) is the moment under
test, as it would be for a user at that minute."""

from datetime import date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from customers.models import Customer, Note, Touch
from customers.tests.factories import CustomerFactory, ProductFactory, TradeFactory
from sop.guards import TouchCandidate, guards_check, wecom_budget_left

pytestmark = pytest.mark.django_db


def shanghai(*args) -> datetime:
    return timezone.make_aware(datetime(*args))


EVE = shanghai(2026, 12, 31, 23, 59)
NEW_YEAR = shanghai(2027, 1, 1, 0, 1)
INSTANTS = pytest.mark.parametrize("moment", [EVE, NEW_YEAR], ids=["2026-12-31T23:59", "2027-01-01T00:01"])
LAST_MINUTE_TRADE = shanghai(2026, 12, 31, 23, 58, 30)
FIRST_MINUTE_TRADE = shanghai(2027, 1, 1, 0, 0, 30)


@pytest.fixture
def clock():
    travellers = []

    def set_to(moment):
        traveller = time_machine.travel(moment, tick=False)
        traveller.start()
        travellers.append(traveller)

    yield set_to
    for traveller in reversed(travellers):
        traveller.stop()


# --- WeCom's four group-send messages per natural month, and quiet hours across midnight --------------------

@INSTANTS
def test_the_wecom_monthly_limit_resets_with_the_new_year_and_quiet_hours_span_midnight(clock, advisor, moment):
    customer = CustomerFactory(advisor=advisor, wecom_external_userid="wm_boundary", risk_level="C3",
                               risk_assessed_at=date(2026, 6, 1))
    for day in range(4):  # four group-send messages in December
        Touch.objects.create(customer=customer, channel="wecom", content="x", status="sent",
                             occurred_at=shanghai(2026, 12, 10 + day, 10, 0))
    clock(moment)
    customer = Customer.objects.select_related("advisor").get(pk=customer.pk)
    verdicts = guards_check([TouchCandidate(key=1, customer=customer, channel="wecom", product=None, executor="advisor"),
                             TouchCandidate(key=2, customer=customer, channel="sms", product=None, executor="system")])
    morning = shanghai(2027, 1, 1, 8, 0)
    if moment == EVE:
        assert verdicts[1] == ("block", "wecom_monthly_limit")
        assert wecom_budget_left([customer.pk]) == {customer.pk: 0}
    else:
        assert verdicts[1] == ("defer", morning)  # a new month: allowed again, after the quiet hours
        assert wecom_budget_left([customer.pk]) == {customer.pk: 4}
    assert verdicts[2] == ("defer", morning)  # 21:00–08:00 holds on both sides of midnight


# --- the live dashboard's "today" tiles ---------------------------------------------------------------------

@INSTANTS
def test_todays_tiles_count_the_shanghai_day(clock, client, hq_manager, advisor, moment):
    from dashboards import live
    from dashboards.views_live import dashboard_payload

    customer = CustomerFactory(advisor=advisor)
    product = ProductFactory(code="510300")
    TradeFactory(customer=customer, product=product, traded_at=LAST_MINUTE_TRADE, amount=Decimal("1000"))
    if moment == NEW_YEAR:
        TradeFactory(customer=customer, product=product, traded_at=FIRST_MINUTE_TRADE, amount=Decimal("2000"))
    clock(moment)
    keys = list(live.client().scan_iter(match=f"{live.prefix()}:*", count=1000))
    if keys:
        live.client().delete(*keys)
    today = timezone.localdate()
    assert today == moment.astimezone(timezone.get_current_timezone()).date()
    tiles = dashboard_payload(scope_key="firm", first=today, last=today)["tiles"]
    assert tiles["trades"]["value"] == 1 and tiles["trades"]["previous_text"] == ("0" if moment == EVE else "1")
    client.force_login(hq_manager)
    assert client.get("/dashboards/").status_code == 200


# --- retention cohorts: the month a trade falls in ----------------------------------------------------------

@INSTANTS
def test_cohorts_put_a_first_minute_trade_in_january(clock, client, hq_manager, moment):
    from dashboards.analyses.refresh import analyses_refresh
    from dashboards.models import CohortMonthly

    customer = CustomerFactory(funnel_stage="funded", opened_at=date(2026, 12, 15),
                               created_at=shanghai(2026, 12, 14, 10, 0))
    TradeFactory(customer=customer, traded_at=shanghai(2026, 12, 16, 10, 0))
    TradeFactory(customer=customer, traded_at=FIRST_MINUTE_TRADE if moment == NEW_YEAR else LAST_MINUTE_TRADE)
    clock(moment)
    analyses_refresh(full=True)
    cells = dict(CohortMonthly.objects.filter(opened_month=date(2026, 12, 1)).values_list("month_offset", "traded"))
    if moment == EVE:
        assert cells == {0: 1}  # December is still running; January does not exist yet
    else:
        assert cells[0] == 1 and cells[1] == 1  # the trade at 00:00:30 is January's
    client.force_login(hq_manager)
    page = client.get("/dashboards/analyses/cohorts/").content.decode()
    assert 'data-testid="cohort-row"><td>2026-12</td>' in page
    assert ("2027-01" in page) is (moment == NEW_YEAR)  # the default period ends with the current month


# --- RFM: the window ends with today in Shanghai ------------------------------------------------------------

@INSTANTS
def test_the_rfm_window_ends_with_the_shanghai_day(clock, moment):
    from tagging.models import CustomerTier
    from tagging.tiers import tier_run_compute

    customer = CustomerFactory()
    TradeFactory(customer=customer, traded_at=shanghai(2026, 12, 1, 10, 0))
    TradeFactory(customer=customer, traded_at=FIRST_MINUTE_TRADE)
    clock(moment)
    run = tier_run_compute()
    tier = CustomerTier.objects.get(customer=customer)
    if moment == EVE:
        assert run.as_of == date(2026, 12, 31) and tier.f == 1 and tier.r == 30  # January's trade is in the future
    else:
        assert run.as_of == date(2027, 1, 1) and tier.f == 2 and tier.r == 0


# --- the advisor's week on the workbench --------------------------------------------------------------------

@INSTANTS
def test_the_advisors_week_runs_from_monday_across_the_new_year(clock, client, advisor, moment):
    customer = CustomerFactory(advisor=advisor)
    Note.objects.create(customer=customer, author=advisor, body="周一", created_at=shanghai(2026, 12, 28, 0, 0, 30))
    Note.objects.create(customer=customer, author=advisor, body="上周日", created_at=shanghai(2026, 12, 27, 23, 59))
    clock(moment)
    from customers.selectors import advisor_week_numbers

    assert advisor_week_numbers(user=advisor)["notes"] == 1
    client.force_login(advisor)
    assert client.get("/").status_code == 200

