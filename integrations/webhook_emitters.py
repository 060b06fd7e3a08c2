"""Hooks that turn changes elsewhere into webhook events (registered in IntegrationsConfig.ready()).

They all run after the change's transaction committed, each in a transaction of its own, and never
raise into the caller: a failure is logged (the change itself stands). Payloads carry identifiers
and business fields, never personal data (name, mobile, ID number); receivers read those through
the API with ``customers:read``.
"""

from __future__ import annotations

import functools
import logging

from django.db import transaction

from customers.models import Customer, Task
from integrations.webhooks import WebhookEventType, webhook_event_emit, webhook_events_emit_sql

logger = logging.getLogger(__name__)

_CUSTOMER_JSON = """jsonb_build_object(
    'external_id', c.external_id,
    'branch', b.code,
    'advisor', u.employee_code,
    'risk_level', c.risk_level,
    'funnel_stage', c.funnel_stage,
    'lifecycle_stage', c.lifecycle_stage,
    'total_assets', c.total_assets::text,
    'updated_at', c.updated_at)"""
_CUSTOMER_FROM = f"""{Customer._meta.db_table} c
    JOIN core_branch b ON b.id = c.branch_id
    LEFT JOIN core_user u ON u.id = c.advisor_id"""


def _never_raise(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with transaction.atomic():
                return func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the change committed already; losing the webhook must not fail it
            logger.exception("webhook emitter %s failed", func.__name__)
            return None

    return wrapper


@_never_raise
def customers_changed_emit(created_ids: list[int], updated_ids: list[int]) -> None:
    """customers.bulk.CUSTOMERS_CHANGED_HOOKS: one customer.created / customer.updated event per customer."""
    for event_type, ids in ((WebhookEventType.CUSTOMER_CREATED, created_ids),
                            (WebhookEventType.CUSTOMER_UPDATED, updated_ids)):
        if ids:
            webhook_events_emit_sql(
                event_type=event_type,
                select_sql=f"SELECT jsonb_build_object('customer', {_CUSTOMER_JSON}), c.branch_id "
                           f"FROM {_CUSTOMER_FROM} WHERE c.id = ANY(%(ids)s::bigint[]) ORDER BY c.id",
                params={"ids": list(ids)},
            )


@_never_raise
def tag_changed_emit(customer_id: int, tag_code: str, action: str, source: str) -> None:
    """tagging.services.TAG_CHANGED_HOOKS: customer.tag_added / customer.tag_removed."""
    event_type = WebhookEventType.CUSTOMER_TAG_ADDED if action == "added" else WebhookEventType.CUSTOMER_TAG_REMOVED
    webhook_events_emit_sql(
        event_type=event_type,
        select_sql=f"SELECT jsonb_build_object('customer', jsonb_build_object('external_id', c.external_id, "
                   "'branch', b.code), 'tag', jsonb_build_object('code', t.code, 'name', t.name), "
                   "'source', %(source)s::text), c.branch_id "
                   f"FROM {_CUSTOMER_FROM} JOIN tagging_tag t ON t.code = %(tag)s WHERE c.id = %(id)s",
        params={"id": customer_id, "tag": tag_code, "source": source},
    )


@_never_raise
def tier_changed_emit(run_id: int) -> None:
    """tagging.tiers.TIER_CHANGED_HOOKS: one customer.tier_changed per CustomerTierHistory row of the run."""
    webhook_events_emit_sql(
        event_type=WebhookEventType.CUSTOMER_TIER_CHANGED,
        select_sql="SELECT jsonb_build_object('customer', jsonb_build_object('external_id', c.external_id, "
                   "'branch', b.code), 'from', NULLIF(h.from_code, ''), 'to', h.to_code, 'run_id', h.run_id, "
                   "'at', h.at), c.branch_id "
                   f"FROM tagging_customertierhistory h JOIN {_CUSTOMER_FROM} ON c.id = h.customer_id "
                   "WHERE h.run_id = %(run)s ORDER BY h.id",
        params={"run": run_id},
    )


@_never_raise
def task_completed_emit(task: Task) -> None:
    """customers.services.TASK_COMPLETED_HOOKS: task.completed."""
    task = Task.objects.select_related("customer__branch", "assignee").get(pk=task.pk)
    webhook_event_emit(
        event_type=WebhookEventType.TASK_COMPLETED,
        payload={
            "task": {"id": task.pk, "title": task.title, "source": task.source, "outcome": task.outcome,
                     "completed_at": task.completed_at.isoformat() if task.completed_at else None,
                     "assignee": task.assignee.employee_code or task.assignee.username},
            "customer": {"external_id": task.customer.external_id, "branch": task.customer.branch.code},
        },
        branch_id=task.customer.branch_id,
    )


def emitters_register() -> None:
    """Idempotent: put each emitter on its hook list once."""
    from customers import bulk
    from customers import services as customer_services
    from tagging import services as tag_services
    from tagging import tiers

    for hooks, emitter in ((bulk.CUSTOMERS_CHANGED_HOOKS, customers_changed_emit),
                           (tag_services.TAG_CHANGED_HOOKS, tag_changed_emit),
                           (tiers.TIER_CHANGED_HOOKS, tier_changed_emit),
                           (customer_services.TASK_COMPLETED_HOOKS, task_completed_emit)):
        if emitter not in hooks:
            hooks.append(emitter)
