"""The ``wecom.contact_added`` webhook: a client added an advisor in WeCom and is (or became) a customer.

Registered on ``events.CONTACT_ADDED_HOOKS`` (WecomConfig.ready), so it fires exactly when SOP journeys
are started: at the add, or — for an add whose contact matched no customer — once, when the review queue
or a later sync links it. Identifiers and business fields only, never the client's name, remark or mobile.
"""

from __future__ import annotations

from integrations.webhook_emitters import _never_raise
from integrations.webhooks import WebhookEventType, webhook_event_emit


@_never_raise
def contact_added_emit(customer, contact, contact_way) -> None:
    from customers.models import Customer

    customer = Customer.objects.select_related("branch", "advisor").get(pk=customer.pk)
    added_at = getattr(contact, "added_at", None)
    webhook_event_emit(
        event_type=WebhookEventType.WECOM_CONTACT_ADDED,
        payload={
            "customer": {"external_id": customer.external_id, "branch": customer.branch.code,
                         "advisor": (customer.advisor.employee_code or customer.advisor.username)
                         if customer.advisor else None},
            "wecom": {"external_userid": contact.external_userid, "userid": getattr(contact, "added_userid", "") or "",
                      "added_at": added_at.isoformat() if added_at else None, "match": contact.match_status},
            "contact_way": {"id": contact_way.pk, "state": contact_way.state, "channel": contact_way.channel,
                            "campaign": contact_way.campaign} if contact_way else None,
        },
        branch_id=customer.branch_id,
    )


def webhook_hooks_register() -> None:
    """Idempotent: the wecom.contact_added webhook on CONTACT_ADDED_HOOKS, and the push of synced tags changed by
    hand on TAG_CHANGED_HOOKS."""
    from integrations.wecom.events import CONTACT_ADDED_HOOKS
    from integrations.wecom.tags_sync import customer_tag_changed_push
    from tagging import services as tag_services

    if contact_added_emit not in CONTACT_ADDED_HOOKS:
        CONTACT_ADDED_HOOKS.append(contact_added_emit)
    if customer_tag_changed_push not in tag_services.TAG_CHANGED_HOOKS:
        tag_services.TAG_CHANGED_HOOKS.append(customer_tag_changed_push)
