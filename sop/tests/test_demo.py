"""The demo journeys on a small demo data set: three live journeys with two weeks of replayed history
(enrollments, step runs in several outcomes, goals met, a hold-out), nothing dated after now, and a
second run that changes nothing."""

import pytest
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from customers.demo_data import seed_demo
from customers.models import Task, Touch, Trade
from sop.demo import RECALL, TEMPLATES, WAKE, WELCOME, sop_demo_seed
from sop.goals import goal_summary
from sop.models import Enrollment, Journey, MessageTemplate, StepRun, TemplateVersion

CUSTOMERS = 1000
TABLES = ("sop_journey", "sop_journeyversion", "sop_enrollment", "sop_steprun", "sop_messagetemplate",
          "sop_templateversion", "customers_touch", "customers_task", "customers_trade", "segments_segment",
          "tagging_customertaghistory")


def _counts() -> dict:
    with connection.cursor() as cursor:
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
            counts[table] = cursor.fetchone()[0]
        cursor.execute("SELECT md5(string_agg(id || status || coalesce(goal_met_at::text, ''), ',' ORDER BY id)) "
                       "FROM sop_enrollment")
        counts["enrollment_digest"] = cursor.fetchone()[0]
    return counts


def _defaults() -> None:
    """What the data migrations put in (a transactional test elsewhere may have flushed them)."""
    import importlib

    from django.apps import apps

    from tagging.defaults import defaults_load

    if not apps.get_model("tagging", "Tag").objects.exists():
        defaults_load(apps.get_model)
    if not apps.get_model("sop", "GuardPolicy").objects.exists():
        importlib.import_module("sop.migrations.0002_calendar_phrases_policy").seed(apps, None)
        importlib.import_module("sop.migrations.0004_compliance_wording_kinds").seed_disclosures(apps, None)


@pytest.fixture(scope="module")
def seeded_twice(django_db_setup, django_db_blocker):
    """Demo data, the SOP demo seeded, its counts, then a second seed — rolled back when the module ends."""
    with django_db_blocker.unblock(), transaction.atomic():
        _defaults()
        seed_demo(customers=CUSTOMERS, seed=42)
        now = timezone.now()
        first = sop_demo_seed(now=now)
        after_first = _counts()
        second = sop_demo_seed()
        yield {"now": now, "first": first, "second": second, "after_first": after_first, "after_second": _counts()}
        transaction.set_rollback(True)


@pytest.fixture
def demo(seeded_twice, db):
    return seeded_twice


def test_three_published_journeys_run_with_enrollments(demo):
    assert demo["first"]["created"] == 3
    journeys = {j.name: j for j in Journey.objects.filter(name__in=[WELCOME, RECALL, WAKE])}
    assert set(journeys) == {WELCOME, RECALL, WAKE}
    for journey in journeys.values():
        assert journey.status == Journey.Status.LIVE and journey.live_version.number == 1
        assert journey.live_version.published_by.username == "operator"
        assert Enrollment.objects.filter(journey=journey).exists(), journey.name
    triggers = {name: j.live_version.definition["trigger"]["type"] for name, j in journeys.items()}
    assert triggers == {WELCOME: "wecom_contact_added", RECALL: "funnel_stalled", WAKE: "tier_changed"}
    wake = Enrollment.objects.filter(journey=journeys[WAKE])
    assert wake.filter(status="holdout").exists()  # 10 % hold-out, measured like the others
    assert not StepRun.objects.filter(enrollment__status="holdout").exists()
    assert set(wake.exclude(status="holdout").values_list("variant", flat=True)) == {"A", "B"}


def test_templates_are_written_by_the_operator_and_approved_by_compliance(demo):
    from sop.templates_lint import template_lint

    names = [name for name, *_ in TEMPLATES.values()]
    templates = MessageTemplate.objects.filter(name__in=names)
    assert templates.count() == len(TEMPLATES)
    for template in templates:
        version = template.approved_version()
        assert version.created_by.username == "operator" and version.reviewed_by.username == "compliance"
        assert template_lint(version.body, version.product) == []
    product_version = TemplateVersion.objects.get(template__name=TEMPLATES["wake_b"][0])
    assert product_version.product.code == "SY0091" and "理财非存款" in product_version.body


def test_the_replay_leaves_step_runs_in_several_outcomes_and_real_touches(demo):
    runs = StepRun.objects.filter(enrollment__journey__name__in=[WELCOME, RECALL, WAKE])
    outcomes = set(runs.values_list("outcome", flat=True))
    assert {"sent", "prepared", "task_created", "waited", "then", "else"} <= outcomes
    statuses = dict(runs.values_list("status").annotate(n=Count("pk")))
    assert statuses.get("done", 0) > 50 and statuses.get("blocked", 0) > 0  # e.g. not a WeCom contact
    assert Touch.objects.filter(source__startswith="sop:", channel="sms", status="sent").exists()
    assert Touch.objects.filter(source__startswith="sop:", channel="app_push", status="sent").exists()
    assert Task.objects.filter(source="sop", status="done").exists()  # the advisors worked through the past
    assert Task.objects.filter(source="sop_wecom").exists()
    assert demo["first"]["history_messages"]["sms"] > 0


def test_goals_are_measured_and_summarised(demo):
    met = Enrollment.objects.filter(journey__name__in=[WELCOME, RECALL, WAKE], goal_met_at__isnull=False)
    assert met.exists()
    for enrollment in met.select_related("version"):
        goal = enrollment.version.definition["goal"]
        assert enrollment.entered_at < enrollment.goal_met_at
        assert (enrollment.goal_met_at - enrollment.entered_at).days < goal["within_days"]
    wake = Journey.objects.get(name=WAKE)
    summary = goal_summary(wake)
    assert summary["goal"]["within_days"] == 30 and summary["holdout"]["enrolled"] > 0
    assert summary["treatment"]["enrolled"] == Enrollment.objects.filter(journey=wake).exclude(status="holdout").count()
    assert set(summary["variants"]) == {"A", "B"}


def test_nothing_is_dated_after_the_seed(demo):
    now = demo["now"]
    assert Enrollment.objects.aggregate(m=Max("entered_at"))["m"] <= now
    assert StepRun.objects.aggregate(m=Max("finished_at"))["m"] <= now
    assert Touch.objects.aggregate(m=Max("occurred_at"))["m"] <= now
    assert Trade.objects.aggregate(m=Max("traded_at"))["m"] <= now
    assert not Task.objects.filter(completed_at__gt=now).exists()


def test_running_it_again_creates_nothing(demo):
    from sop.tasks import demo_seed

    assert demo["second"] == {"created": 0}
    assert demo["after_second"] == demo["after_first"]
    assert demo_seed() == {"created": 0}  # the Celery task `manage.py demo_wecom` queues after the groups demo
