"""Walks EVERY URL pattern of the project: users outside a customer's scope get 404 for its objects.

A new URL with an object in its path fails this test until OBJECT_KWARGS knows how to make an
object of another scope for it; a new URL without one must be listed in PAGES_WITHOUT_OBJECTS,
where the test checks that another scope's customers do not show up on it.
"""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from customers.tests.factories import CustomerFactory, TaskFactory

# pattern names that carry no object id; checked for leaks instead
PAGES_WITHOUT_OBJECTS = {
    "home", "customers:list", "customers:tasks", "compliance:index", "compliance:audit_export",
    "customers_import:upload", "customers_import:template",
    "tagging:index", "tagging:tag_create", "tagging:category_create", "tagging:bulk",
    "tagging:conversation_rules", "tagging:conversation_rules_try", "tagging:tiers",
    "integrations:webhooks", "integrations:crm", "integrations:index", "integrations:api_clients",
}
# infrastructure with no customer data at all
EXEMPT_PREFIXES = ("admin:", "healthz", "login", "logout", "password_change", "password_change_done", "set_language",
                   "javascript-catalog",
                   # REST API: Bearer keys, not staff sessions (a session alone gets 401). Branch scope of every
                   # api: route with an object is proved by integrations/tests/test_api_auth.py::
                   # test_branch_scoped_client_gets_404_for_another_branch_on_every_api_object_url
                   "api:", "api_not_found",
                   # WeCom's server calls it, signed with the callback token: no session, no customer pages;
                   # integrations/wecom/tests prove a bad signature gets 403 and changes nothing
                   "wecom:callback")


def _walk(resolver, namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            for name, pattern, converters in _walk(entry, ns):
                yield name, str(entry.pattern) + pattern, {**entry.pattern.converters, **converters}
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else str(entry.pattern)
            yield name, str(entry.pattern), dict(getattr(entry.pattern, "converters", {}))


def all_patterns():
    return list(_walk(get_resolver()))


@pytest.fixture
def foreign(db, other_branch_advisor, advisor, operator):
    """Objects of the Shanghai advisor's scope, which the Beijing staff must not reach."""
    customer = CustomerFactory(advisor=other_branch_advisor, name="上海专属客户甲", mobile="13912345678")
    task = TaskFactory(customer=customer, assignee=other_branch_advisor, due_at=timezone.now() + timedelta(hours=1))
    mine = CustomerFactory(advisor=advisor, name="北京自己的客户")
    from tagging.conversation import suggestions_create_for_text

    suggestion = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type="note", source_id=1)[0]
    return {"customer": customer, "task": task, "mine": mine, "operator": operator, "suggestion": suggestion}


def _import_job(objs):
    from customers.models import ImportJob

    return ImportJob.objects.create(file="imports/x.csv", original_name="x.csv", created_by=objs["operator"]).pk


# kwarg → value; "pattern name:kwarg" overrides for one pattern. Objects that are not a customer's
# (tags, tiers) are reached by role, so the outsiders here (advisor, branch manager) get 404 by role.
OBJECT_KWARGS = {
    "external_id": lambda objs: objs["customer"].external_id,
    "task_id": lambda objs: objs["task"].pk,
    "job_id": _import_job,
    "code": lambda objs: "margin_intent",
    "tag_code": lambda objs: "margin_intent",
    "suggestion_id": lambda objs: objs["suggestion"].pk,
    "rule_id": lambda objs: _conversation_rule(),
    "run_id": lambda objs: _tier_run(),
    "tagging:tier_strategy_edit:code": lambda objs: "important_value",
    # webhooks are firm-wide admin objects: everyone else gets 404 by role
    "subscription_id": lambda objs: _webhook_delivery().subscription_id,
    "delivery_id": lambda objs: _webhook_delivery().pk,
    # API clients are firm-wide admin objects too
    "client_id": lambda objs: _api_client(),
}


def _register_area_urls():
    """Areas list their own URLs in ``<app>/tests/scope_urls.py`` (``PAGES_WITHOUT_OBJECTS``, a set, and
    ``OBJECT_KWARGS``, factories taking the ``foreign`` objects), so adding an area touches only its app."""
    for app in apps.get_app_configs():
        try:
            module = importlib.import_module(f"{app.name}.tests.scope_urls")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"{app.name}.tests", f"{app.name}.tests.scope_urls"):
                raise
            continue
        PAGES_WITHOUT_OBJECTS.update(getattr(module, "PAGES_WITHOUT_OBJECTS", set()))
        clashes = set(OBJECT_KWARGS) & set(getattr(module, "OBJECT_KWARGS", {}))
        assert not clashes, f"{module.__name__} redefines {clashes}"
        OBJECT_KWARGS.update(getattr(module, "OBJECT_KWARGS", {}))


_register_area_urls()


def _api_client():
    from integrations.api_clients import api_client_create

    return api_client_create(actor=None, name="scope", scopes=["customers:read"])[0].pk


def _webhook_delivery():
    from integrations.models import WebhookDelivery, WebhookEvent, WebhookSubscription

    subscription = WebhookSubscription.objects.create(name="scope", url="https://example.com/hook",
                                                      event_types=["task.completed"], secret_encrypted="x")
    event = WebhookEvent.objects.create(event_type="task.completed", payload={})
    return WebhookDelivery.objects.create(subscription=subscription, event=event)


def _tier_run():
    from tagging.tiers import tier_run_compute

    return tier_run_compute(requested_by="scope test").pk


def _conversation_rule():
    from tagging.models import ConversationRule, Tag

    return ConversationRule.objects.create(tag=Tag.objects.get(code="margin_intent"), keywords=["两融"]).pk


def _kwarg_value(name, kwarg, objs):
    factory = OBJECT_KWARGS.get(f"{name}:{kwarg}") or OBJECT_KWARGS[kwarg]
    return factory(objs)


def _url(name: str, route: str, converters: dict, objs) -> str:
    path = route
    for kwarg in converters:
        value = str(_kwarg_value(name, kwarg, objs))
        path = path.replace(f"<{kwarg}>", value)
        for conv in ("int", "str", "slug", "uuid", "path", "extid"):
            path = path.replace(f"<{conv}:{kwarg}>", value)
    return "/" + path.lstrip("^").rstrip("$")


def test_every_url_is_covered_by_this_test():
    uncovered = []
    for name, route, converters in all_patterns():
        if name.startswith(EXEMPT_PREFIXES) or route.startswith(("admin/", "i18n/", "static/")):
            continue
        if converters:
            missing = [k for k in converters if k not in OBJECT_KWARGS and f"{name}:{k}" not in OBJECT_KWARGS]
            if missing:
                uncovered.append(f"{name} ({route}): no object factory for {missing}")
        elif name not in PAGES_WITHOUT_OBJECTS:
            uncovered.append(f"{name} ({route}): add it to PAGES_WITHOUT_OBJECTS or OBJECT_KWARGS")
    assert uncovered == []


@pytest.mark.parametrize("outsider_role", ["advisor", "branch_manager", "same_branch_advisor"])
def test_objects_outside_scope_are_404_on_every_url(client, foreign, advisor, branch_manager, same_branch_advisor,
                                                    outsider_role):
    outsider = {"advisor": advisor, "branch_manager": branch_manager}.get(outsider_role)
    if outsider_role == "same_branch_advisor":
        # a colleague in the same branch must not reach the Beijing advisor's own client either
        outsider = same_branch_advisor
        from tagging.conversation import suggestions_create_for_text

        foreign = {**foreign, "customer": foreign["mine"],
                   "task": TaskFactory(customer=foreign["mine"], assignee=advisor, due_at=timezone.now()),
                   "suggestion": suggestions_create_for_text(customer=foreign["mine"], text="客户想开两融",
                                                             source_type="note", source_id=2)[0]}
    client.force_login(outsider)
    checked = 0
    for name, route, converters in all_patterns():
        if not converters or name.startswith(EXEMPT_PREFIXES) or route.startswith("admin/"):
            continue
        url = _url(name, route, converters, foreign)
        response = client.get(url)
        if response.status_code == 405:
            response = client.post(url, {})
        assert response.status_code == 404, f"{name} {url} answered {response.status_code} to {outsider}"
        checked += 1
    assert checked >= 4


def test_pages_without_objects_do_not_list_other_scopes(client, foreign, advisor):
    client.force_login(advisor)
    for name, route, converters in all_patterns():
        if converters or name not in PAGES_WITHOUT_OBJECTS:
            continue
        response = client.get("/" + route)
        assert response.status_code in (200, 404, 405), f"{name} answered {response.status_code}"
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert "上海专属客户甲".encode() not in body, f"{name} leaks another branch's customer"


def test_in_scope_users_do_reach_the_object(client, foreign, other_branch_advisor, hq_manager, other_branch_manager):
    for user in (other_branch_advisor, hq_manager, other_branch_manager):
        client.force_login(user)
        assert client.get(f"/customers/c/{foreign['customer'].external_id}/").status_code == 200, user


def test_non_admins_cannot_use_the_admin_site(client, hq_manager, compliance):
    for user in (hq_manager, compliance):
        client.force_login(user)
        response = client.get("/admin/customers/customer/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
