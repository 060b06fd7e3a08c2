"""One way to create tasks: whoever creates them (a person, an SOP step, a segment action, churn follow-ups, group
invitations), a task is never given to someone who may not see its customer, and its source is one of the known
kinds."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from customers.models import Task
from customers.services import task_create, tasks_create
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent.parent


def test_an_assignee_who_cannot_see_the_customer_gets_no_task(advisor, other_branch_advisor, branch_manager,
                                                               other_branch_manager, hq_manager):
    mine = CustomerFactory(advisor=advisor)
    theirs = CustomerFactory(advisor=other_branch_advisor)
    no_advisor = CustomerFactory(branch=mine.branch, advisor=None)
    made = tasks_create(source=Task.Source.SEGMENT, title="回访", rows=[
        {"customer_id": mine.pk, "assignee_id": advisor.pk},
        {"customer_id": theirs.pk, "assignee_id": advisor.pk},  # another advisor's client
        {"customer_id": mine.pk, "assignee_id": other_branch_manager.pk},  # another branch's manager
        {"customer_id": theirs.pk, "assignee_id": hq_manager.pk},  # HQ sees everyone
        {"customer_id": no_advisor.pk, "assignee_id": branch_manager.pk},
        {"customer_id": no_advisor.pk, "assignee_id": None},
    ])
    assert (len(made.created), made.out_of_scope, made.no_assignee) == (3, 2, 1)
    assert set(Task.objects.values_list("customer_id", "assignee_id")) == {
        (mine.pk, advisor.pk), (theirs.pk, hq_manager.pk), (no_advisor.pk, branch_manager.pk)}
    with pytest.raises(ApplicationError) as exc:
        task_create(customer=theirs, assignee=advisor, title="不是我的客户", due_at=timezone.now())
    assert exc.value.code == "task_assignee_out_of_scope"


def test_an_advisor_who_left_gets_no_new_tasks(advisor):
    customer = CustomerFactory(advisor=advisor)
    advisor.is_active = False
    advisor.save(update_fields=["is_active"])
    made = tasks_create(source=Task.Source.SEGMENT, customers=type(customer).objects.filter(pk=customer.pk), title="x")
    assert (made.created, made.out_of_scope) == ([], 1)


def test_open_or_recent_tasks_of_the_source_are_not_repeated(advisor):
    customer = CustomerFactory(advisor=advisor)
    row = [{"customer_id": customer.pk, "assignee_id": advisor.pk}]
    assert len(tasks_create(source=Task.Source.GROUP_INVITE, rows=row, title="邀请", skip_open=True).created) == 1
    assert tasks_create(source=Task.Source.GROUP_INVITE, rows=row, title="邀请", skip_open=True).already == 1
    since = timezone.now() - timedelta(hours=1)
    assert tasks_create(source=Task.Source.CHURN, rows=row, title="回访", skip_since=since).created
    assert tasks_create(source=Task.Source.CHURN, rows=row, title="回访", skip_since=since).already == 1
    with pytest.raises(ApplicationError):
        tasks_create(source="whatever", rows=row, title="x")


def test_no_other_code_writes_tasks():
    """customers.services.tasks_create is the only writer; a new creator must go through it."""
    writers = re.compile(r"Task\.objects\.(create|bulk_create|get_or_create|update_or_create)\(|Task\(customer"
                         r"|INSERT INTO customers_task\b")
    found = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith((".venv/", "node_modules/", ".data/")) or "/tests/" in f"/{relative}" \
                or "/migrations/" in relative or relative == "customers/services.py":
            continue
        if writers.search(path.read_text(encoding="utf-8")):
            found.append(relative)
    assert found == []
