"""Setting and removing one tag on one customer: thin wrappers of the one writer (tagging/writer.py)."""

from django.db import transaction

from tagging.models import CustomerTag, Tag
from tagging.writer import _NOT_GIVEN, customer_tags_set


@transaction.atomic
def customer_tag_add(*, customer, tag: Tag, source: str, actor, evidence: str = "", evidence_data: dict | None = None,
                     expires_at=_NOT_GIVEN) -> CustomerTag:
    """Set ``tag`` on one customer and return the row (tagging.writer.customer_tags_set: expiry, exclusive groups,
    history, events). ``expires_at`` defaults to the tag's own lifetime; None means no expiry. Idempotent."""
    customer_tags_set(tag=tag, source=source, actor=actor, customer_ids=[customer.pk], evidence=evidence,
                      evidence_data=evidence_data, expires_at=expires_at)
    return CustomerTag.objects.get(customer=customer, tag=tag)


@transaction.atomic
def customer_tag_remove(*, customer, tag: Tag, source: str, actor, reason: str = "") -> bool:
    """Take ``tag`` off one customer with a "removed" history row; False (and nothing written) if absent."""
    return bool(customer_tags_set(tag=tag, source=source, actor=actor, add=False, customer_ids=[customer.pk],
                                  evidence=reason).removed)
