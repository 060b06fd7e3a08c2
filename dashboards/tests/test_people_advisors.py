"""投顾跟进: opportunity tags received / followed up in 48 h / converted, tasks on time, touches and replies,
per advisor in each manager's scope, sortable, by branch for HQ, and a CSV equal to the table."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from customers.models import Note, Task, Touch
from customers.tests.factories import CustomerFactory, TaskFactory, TradeFactory
from dashboards import advisors
from tagging.models import CustomerTagHistory, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_people_cache():
    keys = [advisors.cache_key(d) for d in advisors.PERIODS]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def _tagged(customer, code, days_ago):
    at = timezone.now() - timedelta(days=days_ago)
    CustomerTagHistory.objects.create(customer=customer, tag=Tag.objects.get(code=code), action="added", source="rule",
                                      actor_label="rule", at=at)
    return at


@pytest.fixture
def book(advisor, same_branch_advisor, other_branch_advisor):
    now = timezone.now()
    x = CustomerFactory(advisor=advisor, name="商机甲")
    at = _tagged(x, "margin_intent", 10)
    _tagged(x, "news_reader", 10)  # behaviour, not an opportunity
    Touch.objects.create(customer=x, channel="wecom", direction="out", status="sent", occurred_at=at + timedelta(hours=5))
    Touch.objects.create(customer=x, channel="sms", direction="out", status="blocked", occurred_at=at + timedelta(hours=1))
    Touch.objects.create(customer=x, channel="wecom", direction="in", status="sent", occurred_at=at + timedelta(hours=6))
    TradeFactory(customer=x, traded_at=at + timedelta(days=2))

    y = CustomerFactory(advisor=advisor, name="商机乙")
    at = _tagged(y, "idle_funds", 5)
    Note.objects.create(customer=y, author=advisor, body="电话沟通", created_at=at + timedelta(hours=60))
    TradeFactory(customer=y, traded_at=at + timedelta(hours=1))  # before any follow-up: not a conversion
    _tagged(y, "assets_elsewhere", 40)  # only in the 90-day window

    w = CustomerFactory(advisor=advisor, name="任务丙")
    TaskFactory(customer=w, assignee=advisor, due_at=now - timedelta(days=2), status="done", outcome="reached",
                completed_at=now - timedelta(days=3))
    TaskFactory(customer=w, assignee=advisor, due_at=now - timedelta(days=1))
    TaskFactory(customer=w, assignee=advisor, due_at=now - timedelta(days=3), status="done", outcome="reached",
                completed_at=now - timedelta(days=1))
    TaskFactory(customer=w, assignee=advisor, due_at=now - timedelta(days=1), status="cancelled")
    TaskFactory(customer=w, assignee=advisor, due_at=now + timedelta(days=1))

    z = CustomerFactory(advisor=same_branch_advisor, name="商机丁")
    at = _tagged(z, "star_intent", 3)
    TaskFactory(customer=z, assignee=same_branch_advisor, due_at=at + timedelta(days=1), status="done",
                outcome="converted", completed_at=at + timedelta(hours=20))

    s = CustomerFactory(advisor=other_branch_advisor, name="上海商机")
    _tagged(s, "margin_intent", 1)
    return {"x": x, "y": y, "w": w, "z": z, "s": s}


def _rows(response) -> list[dict]:
    html = response.content.decode()
    rows = []
    for m in re.finditer(r'<tr data-testid="advisor-row" data-advisor="(\d*)" data-branch="(\d+)">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'data-col="(\w+)">([^<]*)</td>', m.group(3)))
        rows.append({"advisor": m.group(1), **cells})
    return rows


def test_counts_per_advisor_follow_the_definitions(book, advisor, same_branch_advisor, other_branch_advisor):
    data = advisors.advisor_stats_compute(days=30)
    rows = {r["advisor_id"]: r for r in data["rows"]}
    assert rows[advisor.pk] == {
        "branch_id": advisor.branch_id, "advisor_id": advisor.pk, "received": 2, "followed_48h": 1, "followed_any": 2,
        "converted": 1, "tasks_due": 3, "tasks_on_time": 1, "tasks_overdue": 2, "touches_out": 1, "replies_in": 1}
    assert (rows[same_branch_advisor.pk]["received"], rows[same_branch_advisor.pk]["followed_48h"],
            rows[same_branch_advisor.pk]["converted"], rows[same_branch_advisor.pk]["tasks_on_time"]) == (1, 1, 1, 1)
    assert (rows[other_branch_advisor.pk]["received"], rows[other_branch_advisor.pk]["followed_any"]) == (1, 0)
    assert {r["advisor_id"]: r["received"] for r in advisors.advisor_stats_compute(days=90)["rows"]}[advisor.pk] == 3
    assert {r["advisor_id"]: r["received"] for r in advisors.advisor_stats_compute(days=7)["rows"]}[advisor.pk] == 1


def test_branch_manager_sees_the_branch_sorted_and_advisors_are_refused(client, book, branch_manager, advisor,
                                                                        same_branch_advisor):
    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/advisors/")
    assert response.status_code == 200
    rows = _rows(response)
    assert [r["advisor"] for r in rows] == [str(same_branch_advisor.pk), str(advisor.pk)]  # 100% before 50%
    assert rows[1] == {"advisor": str(advisor.pk), "received": "2", "followed_48h": "1", "follow_rate": "50.0",
                            "converted": "1", "conversion_rate": "50.0", "tasks_due": "3", "tasks_on_time": "1",
                            "on_time_rate": "33.3", "tasks_overdue": "2", "touches_out": "1", "replies_in": "1",
                            "reply_rate": "100.0"}
    assert "上海商机" not in response.content.decode() and "advisor_other" not in response.content.decode()
    assert response.context["board"]["totals"]["received"] == 3
    by_received = _rows(client.get("/dashboards/analyses/advisors/?sort=received&dir=desc"))
    assert [r["advisor"] for r in by_received] == [str(advisor.pk), str(same_branch_advisor.pk)]
    # a branch manager cannot widen the scope by asking for branches; a malformed period falls back to 30 days
    assert _rows(client.get("/dashboards/analyses/advisors/?by=branch")) == rows
    assert client.get("/dashboards/analyses/advisors/?days=abc&sort=bogus").context["board"]["days"] == 30

    client.force_login(advisor)
    assert client.get("/dashboards/analyses/advisors/").status_code == 404
    assert client.get("/dashboards/analyses/advisors.csv").status_code == 404


def test_hq_sees_all_by_branch_and_the_csv_matches_the_table(client, book, hq_manager):
    client.force_login(hq_manager)
    page = client.get("/dashboards/analyses/advisors/?by=branch&days=30")
    rows = _rows(page)
    assert [(r["received"], r["followed_48h"], r["converted"]) for r in rows] == [("3", "2", "2"), ("1", "0", "0")]
    names = [r["name"] for r in page.context["board"]["rows"]]
    assert names == ["BJ01 营业部", "SH01 营业部"]
    response = client.get("/dashboards/analyses/advisors.csv?by=branch&days=30")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert table[0][:4] == ["营业部", "营业部汇总", "商机标签", "48h 内跟进"]
    assert [row[2:] for row in table[1:]] == [[v for _k, v in r["cells"]] for r in page.context["board"]["rows"]]
    assert [row[1] for row in table[1:]] == names


def test_the_cached_numbers_change_only_when_refreshed(client, book, branch_manager, advisor):
    client.force_login(branch_manager)
    first = client.get("/dashboards/analyses/advisors/").context["board"]["totals"]["received"]
    _tagged(book["w"], "options_intent", 1)
    assert client.get("/dashboards/analyses/advisors/").context["board"]["totals"]["received"] == first
    advisors.advisor_stats_refresh()
    assert client.get("/dashboards/analyses/advisors/").context["board"]["totals"]["received"] == first + 1
    assert Task.objects.count() == 6
