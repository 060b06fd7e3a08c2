"""SOP 效果汇总: per journey enrolled/active/finished, touches sent/delivered/replied/blocked/failed, goal rate of
the treated against the hold-out, uplift and touches per conversion, in the viewer's scope; CSV = table."""

import csv
import io
import itertools
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from customers.models import Touch
from customers.tests.factories import CustomerFactory
from dashboards import sop_rollup
from sop.models import Enrollment, StepRun

pytestmark = pytest.mark.django_db
_keys = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_people_cache():
    cache.delete(sop_rollup.CACHE_KEY)
    yield
    cache.delete(sop_rollup.CACHE_KEY)


def _journey(operator, name, **extra):
    from sop.services import journey_create, journey_publish

    journey = journey_create(actor=operator, name=name, definition={
        "trigger": {"type": "manual"}, "start": "sms",
        "steps": [{"id": "sms", "type": "task", "title": "回访", "due_hours": 24}], **extra})
    journey_publish(actor=operator, journey=journey)
    journey.refresh_from_db()
    return journey


def _enrolled(journey, customer, status, goal=False):
    now = timezone.now()
    return Enrollment.objects.create(journey=journey, version=journey.live_version, customer=customer, status=status,
                                     trigger_key="t", goal_met_at=now if goal else None)


def _step(enrollment, status="done", touch_status=None, block_reason="", reply_after_hours=None):
    now = timezone.now() - timedelta(days=5)
    touch = None
    if touch_status:
        touch = Touch.objects.create(customer=enrollment.customer, channel="sms", direction="out", status=touch_status,
                                     occurred_at=now, source=f"sop:{enrollment.journey_id}")
    if reply_after_hours is not None:
        Touch.objects.create(customer=enrollment.customer, channel="sms", direction="in",
                             occurred_at=now + timedelta(hours=reply_after_hours))
    return StepRun.objects.create(enrollment=enrollment, step_id=f"s{next(_keys)}", step_type="sms",
                                  idempotency_key=f"k{next(_keys)}", status=status, due_at=now, touch=touch,
                                  block_reason=block_reason)


@pytest.fixture
def journeys(operator, advisor, other_branch_advisor):
    main = _journey(operator, "开户激活", goal={"type": "first_trade", "within_days": 14}, holdout_percent=20)
    idle = _journey(operator, "尚无人进入")
    bj = [CustomerFactory(advisor=advisor, name=f"北京{i}") for i in range(5)]
    e1 = _enrolled(main, bj[0], "active", goal=True)
    _step(e1, touch_status="sent", reply_after_hours=10)
    _step(e1, status="dead", touch_status="failed")
    e2 = _enrolled(main, bj[1], "completed")
    _step(e2, touch_status="delivered", reply_after_hours=100)  # a reply four days later is not an answer to it
    _enrolled(main, bj[2], "holdout", goal=True)
    _enrolled(main, bj[3], "holdout")
    e5 = _enrolled(main, bj[4], "exited", goal=True)
    _step(e5, status="blocked", touch_status="blocked", block_reason="suitability")
    sh = _enrolled(main, CustomerFactory(advisor=other_branch_advisor, name="上海客户"), "completed", goal=True)
    _step(sh, touch_status="sent")
    return {"main": main, "idle": idle}


def test_branch_manager_sees_the_branch_numbers(client, journeys, branch_manager):
    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/sop/")
    assert response.status_code == 200
    rows = {r["journey_id"]: r for r in response.context["data"]["rows"]}
    main = rows[journeys["main"].pk]
    assert {k: main[k] for k in ("enrolled", "active", "finished", "holdout", "treated", "treated_goal",
                                  "holdout_goal", "touches", "sent", "delivered", "replied", "blocked", "failed")} == {
        "enrolled": 5, "active": 1, "finished": 2, "holdout": 2, "treated": 3, "treated_goal": 2, "holdout_goal": 1,
        "touches": 4, "sent": 2, "delivered": 1, "replied": 1, "blocked": 1, "failed": 1}
    assert (main["treated_rate"], main["holdout_rate"], main["uplift"]) == (66.7, 50.0, 16.7)
    assert (main["touches_per_conversion"], main["touches_per_incremental"]) == (1.0, 4.0)
    assert main["block_reasons"] == {"suitability": 1} and main["goal"] == "首笔交易" and main["holdout_percent"] == 20
    assert rows[journeys["idle"].pk]["enrolled"] == 0 and rows[journeys["idle"].pk]["treated_rate"] is None
    body = response.content.decode()
    assert 'data-col="uplift">16.7<' in body and "suitability: 1" in body
    url = sop_rollup.results_url(journeys["main"].pk)
    assert main["url"] == url and (not url or f'href="{url}"' in body)


def test_hq_sees_every_branch_and_the_csv_matches_the_table(client, journeys, hq_manager, advisor):
    client.force_login(hq_manager)
    page = client.get("/dashboards/analyses/sop/")
    main = next(r for r in page.context["data"]["rows"] if r["journey_id"] == journeys["main"].pk)
    assert (main["enrolled"], main["treated_rate"], main["uplift"], main["sent"], main["touches_per_incremental"]) == (
        6, 75.0, 25.0, 3, 3.0)
    response = client.get("/dashboards/analyses/sop.csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert table[0][:5] == ["旅程", "状态", "目标", "进入", "进行中"]
    assert table[1:] == [[r["name"], str(r["status"]), r["goal"], *[v for _k, v in r["cells"]]]
                         for r in page.context["data"]["rows"]]
    assert ["开户激活", "运行中", "首笔交易", "6"] == table[1][:4] or ["开户激活", "运行中", "首笔交易", "6"] == table[2][:4]

    client.force_login(advisor)
    assert client.get("/dashboards/analyses/sop/").status_code == 404


def test_an_empty_firm_says_what_to_do(client, operator):
    client.force_login(operator)
    response = client.get("/dashboards/analyses/sop/")
    assert response.status_code == 200 and 'data-testid="empty"' in response.content.decode()
