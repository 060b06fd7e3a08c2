"""The ``wecom.contact_added`` webhook: a client added an advisor in WeCom and is (or became) a customer.

Subscribed to ``core.events.WecomContactAdded`` (WecomConfig.ready), so it fires exactly when SOP journeys
are started: at the add, or — for an add whose contact matched no customer — once, when the review queue
or a later sync links it. Identifiers and business fields only, never the client's name, remark or mobile.
"""

from __future__ import annotations

from core.events import TagChanged, WecomContactAdded, subscribe
from integrations.webhook_emitters import _never_raise
from integrations.webhooks import WebhookEventType, webhook_event_emit


@_never_raise
def contact_added_emit(event: WecomContactAdded) -> None:
    from customers.models import Customer
    from integrations.wecom.models import ContactWay, ExternalContact

    customer = Customer.objects.select_related("branch", "advisor").get(pk=event.customer_id)
    contact = ExternalContact.objects.get(pk=event.contact_id)
    contact_way = ContactWay.objects.filter(pk=event.contact_way_id).first() if event.contact_way_id else None
    added_at = event.at
    webhook_event_emit(
        event_type=WebhookEventType.WECOM_CONTACT_ADDED,
        payload={
            "customer": {"external_id": customer.external_id, "branch": customer.branch.code,
                         "advisor": (customer.advisor.employee_code or customer.advisor.username)
                         if customer.advisor else None},
            "wecom": {"external_userid": contact.external_userid, "userid": event.userid or "",
                      "added_at": added_at.isoformat() if added_at else None, "match": contact.match_status},
            "contact_way": {"id": contact_way.pk, "state": contact_way.state, "channel": contact_way.channel,
                            "campaign": contact_way.campaign} if contact_way else None,
        },
        branch_id=customer.branch_id,
    )


def subscriptions() -> None:
    """The wecom.contact_added webhook, and the push of synced tags changed by hand to WeCom."""
    from integrations.wecom.tags_sync import customer_tag_changed_push

    subscribe(WecomContactAdded, contact_added_emit)
    subscribe(TagChanged, customer_tag_changed_push)
