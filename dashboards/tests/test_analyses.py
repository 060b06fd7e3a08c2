"""The four analyses on small hand-made data: exact numbers for HQ and a branch manager, the CSV equals the
table, bad pickers answer 400 with the reason, the drop-outs become a segment, and the refresh is incremental
(re-adding only what changed gives exactly what a full rebuild gives) and idempotent."""

import csv
import io
import re
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.models import Branch
from customers.models import BehaviourEvent, Customer
from customers.tests.factories import CustomerFactory, TradeFactory
from dashboards.analyses.common import current_month, month_add
from dashboards.analyses.refresh import analyses_refresh
from dashboards.models import AcquisitionMonthly, AnalysisCustomerFact, CohortMonthly, MagicCell

DOUYIN, REFERRAL = "抖音信息流", "老客推荐"
MONTH = month_add(current_month(), -6)  # old enough for the magic number and 3-month retention


def at(day_offset: int, hour: int = 10):
    """A moment ``day_offset`` days after the first of MONTH, Beijing time."""
    return timezone.make_aware(datetime.combine(MONTH + timedelta(days=day_offset), time(hour)))


def event(customer, kind, moment, n=[0]):  # noqa: B006 - a counter for unique ids
    n[0] += 1
    return BehaviourEvent.objects.create(event_id=f"EVT{n[0]:06d}", customer=customer, type=kind, occurred_at=moment)


@pytest.fixture
def world(db, branch_manager, other_branch_manager):
    bj, sh = Branch.objects.get(code="BJ01"), Branch.objects.get(code="SH01")

    def make(branch, stage, channel=DOUYIN, **kw):
        opened = stage in ("opened", "funded")
        return CustomerFactory(branch=branch, funnel_stage=stage, channel=channel, created_at=at(2),
                               opened_at=MONTH + timedelta(days=4) if opened else None,
                               total_assets=kw.pop("assets", Decimal("0")), **kw)

    c = {
        "c1": make(bj, "id_uploaded"), "c2": make(bj, "password_set"), "c3": make(bj, "video_verified"),
        "c4": make(bj, "opened"), "c5": make(bj, "funded", assets=Decimal("100000")),
        "s1": make(sh, "funded", channel=REFERRAL, assets=Decimal("500000"), wecom_external_userid="wm_s1"),
        "s2": make(sh, "id_uploaded", channel=REFERRAL),
    }
    event(c["c1"], "app_login", at(3))
    event(c["c1"], "app_login", at(5))
    for day in range(6):  # six news items in c5's first 30 days: bucket 6
        event(c["c5"], "news_read", at(5 + day))
    event(c["c5"], "news_read", at(40))  # after the 30-day window: not counted
    event(c["c5"], "app_login", month_moment(1))
    TradeFactory(customer=c["c5"], traded_at=at(6))
    TradeFactory(customer=c["c5"], traded_at=at(20))  # second trade within 90 days
    TradeFactory(customer=c["c5"], traded_at=month_moment(3))
    TradeFactory(customer=c["s1"], traded_at=at(7))
    analyses_refresh(full=True)
    return c


def month_moment(months_after: int):
    return timezone.make_aware(datetime.combine(month_add(MONTH, months_after) + timedelta(days=9), time(14)))


def period(**extra):
    return {"start": f"{MONTH:%Y-%m}", "end": f"{MONTH:%Y-%m}", **extra}


def _csv(response):
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def _cells(html: str, testid: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(rf'data-testid="{testid}">(.*?)</td>', html, re.S)]


# --- funnel --------------------------------------------------------------------------------------

def test_funnel_counts_each_step_for_hq_and_only_the_branch_for_its_manager(client, world, hq_manager, branch_manager):
    client.force_login(hq_manager)
    response = client.get("/dashboards/analyses/funnel/", period())
    assert response.status_code == 200
    steps = response.context["report"]["steps"]
    assert [s["reached"] for s in steps] == [7, 5, 4, 3, 2]
    assert [s["dropouts"] for s in steps] == [2, 1, 1, 1, None]
    assert steps[1]["step_rate_text"] == "71.4%" and steps[4]["overall_rate_text"] == "28.6%"
    assert {c["label"]: c["counts"] for c in response.context["report"]["by_channel"]} == {
        DOUYIN: [5, 4, 3, 2, 1], REFERRAL: [2, 1, 1, 1, 1]}

    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/funnel/", period())
    html = response.content.decode()
    assert _cells(html, "reached") == ["5", "4", "3", "2", "1"]
    assert REFERRAL not in html  # Shanghai's channel is not in a Beijing manager's numbers
    rows = _csv(client.get("/dashboards/analyses/funnel.csv", period()))
    assert rows[0][:2] == ["步骤", "到达人数"]
    assert [r[1] for r in rows[1:]] == _cells(html, "reached")
    assert [r[4] for r in rows[1:]] == [c.replace(",", "") for c in _cells(html, "dropouts")][:4] + [""]


def test_bad_pickers_answer_400_with_the_reason_and_another_branch_is_refused(client, world, branch_manager):
    client.force_login(branch_manager)
    for params, message in [({"start": "2026-13"}, "月份格式应为 YYYY-MM"), ({"channel": "不存在的渠道"}, "未知渠道"),
                            ({"branch": "SH01"}, "不在您的数据范围内"), ({"start": "2026-05", "end": "2026-01"}, "不能晚于"),
                            ({"start": "2010-01", "end": "2026-01"}, "最长 60 个月")]:
        response = client.get("/dashboards/analyses/funnel/", params)
        assert response.status_code == 400, params
        assert message in response.content.decode(), params
        csv_response = client.get("/dashboards/analyses/funnel.csv", params)
        assert csv_response.status_code == 400 and message in csv_response.content.decode()
    response = client.get("/dashboards/analyses/cohorts/", {"measure": "bogus"})
    assert response.status_code == 400 and "measure" in response.content.decode()
    response = client.get("/dashboards/analyses/magic/", {"outcome": "bogus"})
    assert response.status_code == 400 and "outcome" in response.content.decode()


def test_advisors_and_compliance_do_not_get_the_analyses(client, world, advisor, compliance):
    for user in (advisor, compliance):
        client.force_login(user)
        assert client.get("/dashboards/analyses/funnel/").status_code == 404
        assert client.get("/dashboards/analyses/channels.csv").status_code == 404


def test_dropouts_of_a_step_become_a_segment_of_exactly_those_clients(client, world, branch_manager):
    from segments.models import Segment
    from segments.services import segment_rebuild

    client.force_login(branch_manager)
    response = client.post("/dashboards/analyses/funnel/dropouts/", {**period(), "stage": "password_set",
                                                                     "channel": DOUYIN})
    segment = Segment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/segments/{segment.pk}/"
    assert segment.branch.code == "BJ01" and "设置密码→视频见证" in segment.name
    segment_rebuild(segment_id=segment.pk)
    assert list(segment.members.values_list("customer_id", flat=True)) == [world["c2"].pk]
    # the segment's own pages show and edit the rule with its "signed up between" condition
    detail = client.get(f"/segments/{segment.pk}/")
    assert detail.status_code == 200 and "signup_date" in detail.content.decode()
    assert client.get(f"/segments/{segment.pk}/edit/").status_code == 200
    # a bad step changes nothing
    response = client.post("/dashboards/analyses/funnel/dropouts/", {**period(), "stage": "funded"})
    assert response.status_code == 302 and Segment.objects.count() == 1


# --- cohorts -------------------------------------------------------------------------------------

def test_cohort_retention_per_month_after_opening(client, world, hq_manager, branch_manager):
    client.force_login(hq_manager)
    report = client.get("/dashboards/analyses/cohorts/", period()).context["report"]
    row = report["rows"][0]
    assert row["month"] == f"{MONTH:%Y-%m}" and row["size"] == 3  # c4, c5 and s1 opened
    assert row["values"][:4] == pytest.approx([2 / 3, 0.0, 0.0, 1 / 3])
    logins = client.get("/dashboards/analyses/cohorts/", period(measure="logged_in")).context["report"]["rows"][0]
    assert logins["values"][:2] == pytest.approx([0.0, 1 / 3])

    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/cohorts/", period())
    row = response.context["report"]["rows"][0]
    assert row["size"] == 2 and row["values"][:4] == [0.5, 0.0, 0.0, 0.5]
    rows = _csv(client.get("/dashboards/analyses/cohorts.csv", period()))
    assert rows[0][:4] == ["开户月份", "开户人数", "M0", "M1"]
    assert rows[1][:6] == [f"{MONTH:%Y-%m}", "2", "50.0%", "0.0%", "0.0%", "50.0%"]


# --- magic number --------------------------------------------------------------------------------

def test_magic_number_buckets_count_behaviour_in_the_first_30_days(client, world, hq_manager, branch_manager):
    client.force_login(hq_manager)
    buckets = client.get("/dashboards/analyses/magic/", period()).context["report"]["buckets"]
    assert [(b["clients"], b["hits"]) for b in buckets if b["clients"]] == [(2, 0), (1, 1)]
    assert buckets[6]["clients"] == 1  # the seventh news item came after day 30
    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/magic/", period(outcome="funded"))
    buckets = response.context["report"]["buckets"]
    assert (buckets[0]["clients"], buckets[0]["hits"], buckets[6]["clients"], buckets[6]["hits"]) == (1, 0, 1, 1)
    rows = _csv(client.get("/dashboards/analyses/magic.csv", period(outcome="funded")))
    assert [r[:4] for r in rows[1:] if r[1] != "0"] == [["0", "1", "0", "0.0%"], ["6", "1", "1", "100.0%"]]


# --- channels ------------------------------------------------------------------------------------

def test_channels_three_layers_and_quadrant(client, world, hq_manager, branch_manager):
    client.force_login(hq_manager)
    response = client.get("/dashboards/analyses/channels/", period())
    channels = {c["channel"]: c for c in response.context["report"]["channels"]}
    douyin, referral = channels[DOUYIN], channels[REFERRAL]
    assert (douyin["visits"], douyin["contacts"], douyin["signups"], douyin["bounce_text"]) == (2, 0, 5, "20.0%")
    assert (douyin["opened"], douyin["funded"], douyin["assets"], douyin["retention_text"]) == (2, 1, Decimal("100000"), "50.0%")
    assert (referral["contacts"], referral["signups"], referral["bounce_text"], referral["retention_text"]) == (
        1, 2, "50.0%", "0.0%")
    assert douyin["quadrant"] == "problem" and referral["quadrant"] == "potential"
    rows = _csv(client.get("/dashboards/analyses/channels.csv", period()))
    assert rows[1] == [DOUYIN, "2", "0", "5", "20.0%", "50.0%", "2", "1", "100000.00", "20000.00", "规模大 · 贡献低"]

    client.force_login(branch_manager)
    report = client.get("/dashboards/analyses/channels/", period()).context["report"]
    assert [c["channel"] for c in report["channels"]] == [DOUYIN]


# --- refresh -------------------------------------------------------------------------------------

def test_refresh_button_queues_a_refresh_after_commit(client, world, branch_manager, django_capture_on_commit_callbacks):
    client.force_login(branch_manager)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/dashboards/analyses/refresh/", {"page": "magic"})
    assert response.status_code == 302 and response["Location"] == "/dashboards/analyses/magic/"
    assert len(callbacks) == 1
    assert "数据更新于" in client.get("/dashboards/analyses/magic/").content.decode()


def _tables():
    return (sorted(AcquisitionMonthly.objects.values_list("month", "branch_id", "channel", "signups", "password_set",
                                                          "video_verified", "opened", "funded", "contacts", "visits",
                                                          "assets")),
            sorted(CohortMonthly.objects.values_list("opened_month", "branch_id", "channel", "month_offset", "clients",
                                                     "traded", "logged_in", "active")),
            sorted(MagicCell.objects.values_list("opened_month", "branch_id", "channel", "behaviour", "bucket", "clients",
                                                 "second_trade", "funded", "retained")),
            sorted(AnalysisCustomerFact.objects.values_list()))


def test_refresh_is_incremental_and_idempotent(world):
    before = _tables()
    again = analyses_refresh()
    assert again.mode == "incremental" and again.customers_changed == 0 and again.cells_rewritten == 0
    assert _tables() == before

    Customer.objects.filter(pk=world["c1"].pk).update(funnel_stage="password_set")
    event(world["c4"], "news_read", at(6))
    world["s2"].delete()
    CustomerFactory(branch=world["c1"].branch, funnel_stage="id_uploaded", channel=DOUYIN, created_at=at(9),
                    opened_at=None, total_assets=0)
    run = analyses_refresh()
    assert run.customers_changed == 4 and run.cells_rewritten > 0
    incremental = _tables()
    assert incremental != before
    assert analyses_refresh().customers_changed == 0
    analyses_refresh(full=True)
    assert _tables() == incremental  # the incremental result is exactly the full rebuild's
