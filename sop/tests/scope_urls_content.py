"""Scope registration of the SOP content pages (sop/urls_content.py) for tests/test_scope.py.

Templates, versions and phrases are firm-wide objects reached by role (operators / compliance), so
the outsiders of the scope test (advisors, branch managers) get 404 by role; a prepared WeCom task
belongs to a client of another scope and is 404 by scope."""

from datetime import timedelta

from django.utils import timezone

PAGES_WITHOUT_OBJECTS = {
    "sop:templates", "sop:template_create", "sop:template_lint", "sop:calendar", "sop:calendar_day_set",
    "sop:calendar_seed", "sop:calendar_import", "sop:approvals", "sop:phrases", "sop:blocked", "sop:blocked_export",
    "sop:guards",
}


def _version(objs):
    from sop.models import TemplateVersion
    from sop.templates_lint import template_save

    version = template_save(actor=objs["operator"], template=None, name="范围测试模板", channel="sms", body="{name}您好")
    return TemplateVersion.objects.get(pk=version.pk)


def _phrase(objs):
    from sop.models import ForbiddenPhrase

    return ForbiddenPhrase.objects.create(phrase="范围测试表述").pk


def _wecom_task(objs):
    from customers.tests.factories import TaskFactory

    customer = objs["customer"]
    return TaskFactory(customer=customer, assignee=customer.advisor, source="sop_wecom",
                       due_at=timezone.now() + timedelta(hours=2)).pk


OBJECT_KWARGS = {
    "sop_template_id": lambda objs: _version(objs).template_id,
    "sop_template_version_id": lambda objs: _version(objs).pk,
    "sop_review_version_id": lambda objs: _version(objs).pk,
    "sop_phrase_id": _phrase,
    "sop_wecom_task_id": _wecom_task,
    "sop_wecom_skip_task_id": _wecom_task,
}
