"""Subscribers that turn changes elsewhere into webhook events (core.events; subscribed in IntegrationsConfig.ready()).

They all run after the change's transaction committed, each in a transaction of its own, and never
raise into the caller: a failure is logged (the change itself stands). Payloads carry identifiers
and business fields, never personal data (name, mobile, ID number); receivers read those through
the API with ``customers:read``.
"""

from __future__ import annotations

import functools
import logging

from django.db import transaction

from core.events import CustomersChanged, SegmentMembershipChanged, TagChanged, TaskCompleted, TierChanged, subscribe
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
def customers_changed_emit(event: CustomersChanged) -> None:
    """One customer.created / customer.updated event per customer."""
    for event_type, ids in ((WebhookEventType.CUSTOMER_CREATED, event.created_ids),
                            (WebhookEventType.CUSTOMER_UPDATED, event.updated_ids)):
        if ids:
            webhook_events_emit_sql(
                event_type=event_type,
                select_sql=f"SELECT jsonb_build_object('customer', {_CUSTOMER_JSON}), c.branch_id "
                           f"FROM {_CUSTOMER_FROM} WHERE c.id = ANY(%(ids)s::bigint[]) ORDER BY c.id",
                params={"ids": list(ids)},
            )


@_never_raise
def tag_changed_emit(event: TagChanged) -> None:
    """customer.tag_added / customer.tag_removed."""
    customer_id, tag_code, source = event.customer_id, event.tag_code, event.source
    event_type = WebhookEventType.CUSTOMER_TAG_ADDED if event.action == "added" else WebhookEventType.CUSTOMER_TAG_REMOVED
    webhook_events_emit_sql(
        event_type=event_type,
        select_sql=f"SELECT jsonb_build_object('customer', jsonb_build_object('external_id', c.external_id, "
                   "'branch', b.code), 'tag', jsonb_build_object('code', t.code, 'name', t.name), "
                   "'source', %(source)s::text), c.branch_id "
                   f"FROM {_CUSTOMER_FROM} JOIN tagging_tag t ON t.code = %(tag)s WHERE c.id = %(id)s",
        params={"id": customer_id, "tag": tag_code, "source": source},
    )


@_never_raise
def tier_changed_emit(event: TierChanged) -> None:
    """One customer.tier_changed per CustomerTierHistory row of the run."""
    run_id = event.run_id
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
def task_completed_emit(event: TaskCompleted) -> None:
    """task.completed."""
    task = Task.objects.select_related("customer__branch", "assignee").get(pk=event.task_id)
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


# one event carries at most this many customers; a bigger move of one branch is split into several events
SEGMENT_EVENT_MAX_CUSTOMERS = 1000


@_never_raise
def segment_members_changed_emit(event: SegmentMembershipChanged) -> None:
    """segment.members_changed: per branch of the moved customers, who joined and who left in one rebuild
    (external ids; a branch-scoped subscriber only hears about its own branch)."""
    webhook_events_emit_sql(
        event_type=WebhookEventType.SEGMENT_MEMBERS_CHANGED,
        select_sql=f"""
            WITH moved AS (
                SELECT c.branch_id, c.external_id, ch.action,
                       (row_number() OVER (PARTITION BY c.branch_id ORDER BY ch.id) - 1) / %(chunk)s AS part
                FROM segments_segmentmemberchange ch JOIN {Customer._meta.db_table} c ON c.id = ch.customer_id
                WHERE ch.rebuild_id = %(rebuild)s)
            SELECT jsonb_build_object(
                       'segment', jsonb_build_object('id', s.id, 'name', s.name),
                       'rebuild_id', r.id, 'size', r.size, 'at', r.finished_at, 'branch', b.code,
                       'joined', COALESCE(jsonb_agg(m.external_id ORDER BY m.external_id)
                                          FILTER (WHERE m.action = 'joined'), '[]'::jsonb),
                       'left', COALESCE(jsonb_agg(m.external_id ORDER BY m.external_id)
                                        FILTER (WHERE m.action = 'left'), '[]'::jsonb)),
                   m.branch_id
            FROM moved m
            JOIN segments_segmentrebuild r ON r.id = %(rebuild)s
            JOIN segments_segment s ON s.id = r.segment_id
            LEFT JOIN core_branch b ON b.id = m.branch_id
            GROUP BY s.id, s.name, r.id, r.size, r.finished_at, b.code, m.branch_id, m.part
            ORDER BY b.code, m.part""",
        params={"rebuild": event.rebuild_id, "chunk": SEGMENT_EVENT_MAX_CUSTOMERS},
    )


def subscriptions() -> None:
    """Customer, tag, tier, task and segment membership changes become webhook outbox events."""
    subscribe(CustomersChanged, customers_changed_emit)
    subscribe(TagChanged, tag_changed_emit)
    subscribe(TierChanged, tier_changed_emit)
    subscribe(TaskCompleted, task_completed_emit)
    subscribe(SegmentMembershipChanged, segment_members_changed_emit)
