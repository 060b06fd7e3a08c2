"""The three people analyses in Chromium on seeded demo data: charts drawn, tables filled, a follow-up task made
from the churn list; screenshots go to test-artifacts/ (and /tmp/helpers/people/ when it exists)."""

import random
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from conftest import ARTIFACTS
from core.demo import DEMO_PASSWORD
from core.models import User
from customers.models import Customer, Task, Touch
from dashboards import advisors, churn, sop_rollup

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = [ARTIFACTS, Path("/tmp/helpers/people")]


def _shot(page, name):
    for folder in SHOTS:
        if folder.exists() or folder == ARTIFACTS:
            folder.mkdir(exist_ok=True)
            page.screenshot(path=str(folder / name), full_page=True)


def _follow_ups(rng, now):
    """Opportunity tags over the last month on a sixth of the opened clients, most followed up, some converted."""
    from tagging.models import CustomerTagHistory, Tag

    tags = list(Tag.objects.filter(category__kind="opportunity"))
    history, touches, tasks = [], [], []
    for c in Customer.objects.filter(opened_at__isnull=False, advisor__isnull=False).select_related("advisor"):
        diligence = 0.35 + (c.advisor_id % 5) * 0.13
        if rng.random() < 0.17:
            at = now - timedelta(hours=rng.randint(50, 29 * 24))
            history.append(CustomerTagHistory(customer=c, tag=rng.choice(tags), action="added", source="rule",
                                              actor_label="rule", at=at))
            if rng.random() < diligence:
                touches.append(Touch(customer=c, channel="wecom", direction="out", status="sent", staff=c.advisor,
                                     occurred_at=at + timedelta(hours=rng.randint(1, 47))))
                if rng.random() < 0.5:
                    touches.append(Touch(customer=c, channel="wecom", direction="in", status="sent",
                                         occurred_at=at + timedelta(hours=49)))
                if rng.random() < 0.3:
                    tasks.append(Task(customer=c, assignee=c.advisor, title="商机跟进", due_at=at + timedelta(hours=48),
                                      status="done", outcome="converted", completed_at=at + timedelta(hours=30)))
        if rng.random() < 0.1:
            due = now - timedelta(hours=rng.randint(1, 29 * 24))
            done = rng.random() < diligence + 0.2
            tasks.append(Task(customer=c, assignee=c.advisor, title="例行回访", due_at=due,
                              status="done" if done else "open", outcome="reached" if done else "",
                              completed_at=due - timedelta(hours=rng.choice((2, 2, 2, -5))) if done else None))
    CustomerTagHistory.objects.bulk_create(history)
    Touch.objects.bulk_create(touches)
    Task.objects.bulk_create(tasks)


def _journey_results(rng, operator):
    """Two running journeys with enrollments, touches and goals (the hold-out converts less)."""
    from sop.engine import enroll_queryset
    from sop.models import Enrollment, StepRun
    from sop.services import journey_create, journey_publish

    for name, trigger, pick, treated_goal, holdout_goal in (("流失挽留", "manual", "churn_score__level", 0.22, 0.12),
                                                            ("新客开户激活", "manual", "lifecycle_stage", 0.35, 0.28)):
        journey = journey_create(actor=operator, name=name, definition={
            "trigger": {"type": trigger}, "start": "sms", "holdout_percent": 15,
            "goal": {"type": "first_trade", "within_days": 14},
            "steps": [{"id": "sms", "type": "task", "title": name, "due_hours": 24}]})
        journey_publish(actor=operator, journey=journey)
        journey.refresh_from_db()
        value = "high" if pick == "churn_score__level" else "activate"
        enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(**{pick: value}),
                        trigger_key="demo")
        now = timezone.now()
        for e in Enrollment.objects.filter(journey=journey).select_related("customer"):
            goal = rng.random() < (holdout_goal if e.status == "holdout" else treated_goal)
            Enrollment.objects.filter(pk=e.pk).update(
                goal_met_at=now if goal else None,
                status=e.status if e.status == "holdout" else rng.choice(("active", "completed", "completed")))
            if e.status == "holdout":
                continue
            roll = rng.random()
            status = "blocked" if roll < 0.08 else "dead" if roll < 0.11 else "done"
            touch = Touch.objects.create(customer=e.customer, channel="sms", direction="out", occurred_at=now,
                                         status={"blocked": "blocked", "dead": "failed"}.get(status, rng.choice(
                                             ("sent", "delivered", "delivered", "replied"))))
            StepRun.objects.filter(enrollment=e).update(status=status, touch=touch, finished_at=now,
                                                        block_reason="suitability" if status == "blocked" else "")


@pytest.fixture
def demo(transactional_db, make_staff):
    from customers.demo_data import seed_demo

    seed_demo(customers=1500, seed=7)
    rng = random.Random(7)
    churn.churn_scores_compute()
    churn.churn_backtest_compute()
    operator = User.objects.get(username="operator")
    _follow_ups(rng, timezone.now())
    _journey_results(rng, operator)
    advisors.advisor_stats_refresh()
    sop_rollup.sop_rollup_refresh()
    yield
    cache.delete_many([churn.SUMMARY_KEY, churn.BACKTEST_KEY, sop_rollup.CACHE_KEY,
                       *[advisors.cache_key(d) for d in advisors.PERIODS]])


def _login(page, username):
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=nav]")


def test_people_analyses_in_the_browser(page, demo):
    _login(page, "manager_bj")
    page.goto("/dashboards/analyses/churn/")
    page.wait_for_selector("[data-testid=churn-chart][data-rendered='1'] canvas")
    page.wait_for_selector("[data-testid=backtest-chart][data-rendered='1'] canvas")
    rows = page.locator("[data-testid=churn-row]")
    assert rows.count() > 0
    high = int(page.inner_text("[data-testid=tile-high]").replace(",", ""))
    assert high == Customer.objects.filter(branch__code="BJ01", churn_score__level="high").count()
    _shot(page, "people-churn.png")

    page.locator("[data-testid=advisor-view]").first.click()
    page.wait_for_selector("[data-testid=churn-row]")
    first_two = [page.locator("[data-testid=churn-row]").nth(i).get_attribute("data-external-id") for i in range(2)]
    for i in range(2):
        page.locator("[data-testid=churn-select]").nth(i).check()
    page.click("[data-testid=tasks-selected]")
    page.wait_for_selector("[data-testid=action-ok] >> text=已创建 2 个跟进任务")
    assert set(Task.objects.filter(source="churn").values_list("customer__external_id", flat=True)) == set(first_two)
    page.click("[data-testid=tasks-selected]")  # the same two again today: nothing new
    page.wait_for_selector("[data-testid=action-ok] >> text=已创建 0 个跟进任务")
    _shot(page, "people-churn-advisor.png")

    _login(page, "hq")
    page.goto("/dashboards/analyses/advisors/")
    page.wait_for_selector("[data-testid=advisor-chart][data-rendered='1'] canvas")
    assert page.locator("[data-testid=advisor-row]").count() >= 6
    _shot(page, "people-advisors.png")
    page.select_option("[data-testid=picker-by]", "branch")
    page.wait_for_selector("[data-testid=advisor-row][data-advisor='']")
    assert page.locator("[data-testid=advisor-row]").count() == 4

    page.goto("/dashboards/analyses/sop/")
    page.wait_for_selector("[data-testid=sop-chart][data-rendered='1'] canvas")
    assert page.locator("[data-testid=sop-row]").count() == 2
    _shot(page, "people-sop.png")
