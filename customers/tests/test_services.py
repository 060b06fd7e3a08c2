from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers import services
from customers.models import Task
from customers.tests.factories import CustomerFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_reveal_returns_plaintext_and_audits_who_why_where(advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13812345678", id_number="11010519491231002X")
    assert customer.mobile_masked == "138****5678" and "13812345678" not in customer.mobile_encrypted
    value = services.customer_reveal(user=advisor, customer=customer, field="mobile", reason="回访核实",
                                     ip_address="10.0.0.8")
    assert value == "13812345678"
    row = AuditLog.objects.get(action="customer.reveal")
    assert (row.actor, row.target_id, row.reason, row.ip_address, row.details) == (
        advisor, customer.external_id, "回访核实", "10.0.0.8", {"field": "mobile"})
    assert "13812345678" not in str(row.details)


def test_operator_may_not_reveal_and_nothing_is_audited(operator, advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13812345678")
    with pytest.raises(ApplicationError) as err:
        services.customer_reveal(user=operator, customer=customer, field="mobile", reason="想看")
    assert err.value.status_code == 403
    assert not AuditLog.objects.exists()


def test_reveal_needs_a_reason(advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13812345678")
    with pytest.raises(ApplicationError):
        services.customer_reveal(user=advisor, customer=customer, field="mobile", reason=" ")
    assert not AuditLog.objects.exists()


def test_note_updates_last_contact_and_rejects_empty(advisor):
    customer = CustomerFactory(advisor=advisor)
    assert customer.last_contact_at is None
    note = services.note_create(author=advisor, customer=customer, body="客户想了解两融开通条件")
    customer.refresh_from_db()
    assert customer.last_contact_at == note.created_at
    with pytest.raises(ApplicationError):
        services.note_create(author=advisor, customer=customer, body="   ")


def test_task_complete_with_outcome_once(advisor):
    customer = CustomerFactory(advisor=advisor)
    task = TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now() - timedelta(hours=2))
    with pytest.raises(ApplicationError):
        services.task_complete(user=advisor, task=task, outcome="")
    done = services.task_complete(user=advisor, task=task, outcome="interested", note="下周再约")
    assert done.status == Task.Status.DONE and done.outcome == "interested" and done.completed_at
    customer.refresh_from_db()
    assert customer.last_contact_at == done.completed_at
    with pytest.raises(ApplicationError):
        services.task_complete(user=advisor, task=task, outcome="reached")


def test_only_task_roles_close_tasks_and_every_close_is_audited(client, advisor, operator, compliance):
    from django.urls import reverse

    from core.models import AuditLog

    task = TaskFactory(customer=CustomerFactory(advisor=advisor), assignee=advisor,
                       due_at=timezone.now() - timedelta(hours=2))
    for outsider in (operator, compliance):  # firm-wide roles that see the customer but do not work tasks
        with pytest.raises(ApplicationError) as err:
            services.task_complete(user=outsider, task=task, outcome="converted")
        assert err.value.code == "task_not_allowed"
        client.force_login(outsider)
        assert client.post(reverse("customers:task_complete", args=[task.pk]), {"outcome": "converted"}).status_code == 404
    task.refresh_from_db()
    assert task.status == Task.Status.OPEN
    services.task_complete(user=advisor, task=task, outcome="reached")
    row = AuditLog.objects.get(action="task.complete", target_id=str(task.pk))
    assert row.actor == advisor and row.details["outcome"] == "reached"


def test_task_assignee_must_see_the_customer(advisor, other_branch_advisor):
    customer = CustomerFactory(advisor=advisor)
    with pytest.raises(ApplicationError):
        services.task_create(customer=customer, assignee=other_branch_advisor, title="x", due_at=timezone.now())
