"""Setting and removing one tag on one customer, with history: the write every tag source goes through
(manual, API, rule, conversation, WeCom)."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.events import TagChanged, emit
from core.models import User
from tagging.models import CustomerTag, CustomerTagHistory, Tag, TagSource

History = CustomerTagHistory.Action

def tag_changed_notify(*, customer_id: int, tag_code: str, action: str, source: str) -> None:
    emit(TagChanged(customer_id=customer_id, tag_code=tag_code, action=action, source=source))


def _actor(actor) -> tuple[User | None, str]:
    """(user or None, label) for a User or a free-text label such as "system" or "api:crm"."""
    if isinstance(actor, User):
        return (actor if actor.pk else None), actor.username
    return None, str(actor or "system")[:150]


def _lock_customer(customer) -> None:
    """Serialise tag changes per customer so exclusive groups hold under concurrent writers."""
    from customers.models import Customer

    Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True).first()


def _history(*, customer, tag: Tag, action: str, source: str, label: str, evidence: str = "") -> None:
    CustomerTagHistory.objects.create(customer=customer, tag=tag, action=action, source=source, actor_label=label,
                                      evidence=evidence)


def _displace_exclusive(*, customer, tag: Tag, source: str, label: str, now: datetime) -> None:
    """Remove the customer's other tags of ``tag``'s exclusive group, each with a history row."""
    if not tag.exclusive_group:
        return
    others = (CustomerTag.objects.filter(customer=customer, tag__exclusive_group=tag.exclusive_group)
              .exclude(tag=tag).select_related("tag"))
    for row in others:
        expired = row.expires_at is not None and row.expires_at <= now
        _history(customer=customer, tag=row.tag, action=History.EXPIRED if expired else History.REMOVED,
                 source=source, label=label,
                 evidence="已过有效期" if expired else f"互斥：由「{tag.name}」替换")
        row.delete()
        tag_changed_notify(customer_id=customer.pk, tag_code=row.tag.code, action="removed", source=source)


@transaction.atomic
def customer_tag_add(*, customer, tag: Tag, source: str, actor, evidence: str = "", evidence_data: dict | None = None,
                     expires_at: datetime | None = None) -> CustomerTag:
    """Set ``tag`` on ``customer`` (``expires_at`` None = no expiry) and return the row.

    Idempotent: if the customer already has the tag, only a change of source, evidence, evidence data
    or expiry is written (one "updated" history row); an identical call writes nothing. Adding a tag of
    an exclusive group removes the customer's other tags of that group, each with a "removed" row.
    An expired row that the sweeper has not moved yet counts as absent (it gets its "expired" row).
    """
    if source not in TagSource.values:
        raise ApplicationError("tag_source_invalid", f"未知的标签来源：{source}")
    user, label = _actor(actor)
    evidence_data = evidence_data or {}
    now = timezone.now()
    _lock_customer(customer)
    _displace_exclusive(customer=customer, tag=tag, source=source, label=label, now=now)
    existing = CustomerTag.objects.filter(customer=customer, tag=tag).first()
    if existing is not None and existing.expires_at is not None and existing.expires_at <= now:
        _history(customer=customer, tag=tag, action=History.EXPIRED, source=existing.source, label="system",
                 evidence="已过有效期")
        existing.delete()
        existing = None
    if existing is None:
        row = CustomerTag.objects.create(customer=customer, tag=tag, source=source, set_by=user, set_by_label=label,
                                         evidence=evidence, evidence_data=evidence_data, expires_at=expires_at)
        _history(customer=customer, tag=tag, action=History.ADDED, source=source, label=label, evidence=evidence)
        tag_changed_notify(customer_id=customer.pk, tag_code=tag.code, action="added", source=source)
        return row
    wanted = {"source": source, "evidence": evidence, "evidence_data": evidence_data, "expires_at": expires_at}
    changed = [name for name, value in wanted.items() if getattr(existing, name) != value]
    if not changed:
        return existing
    for name in changed:
        setattr(existing, name, wanted[name])
    existing.set_by, existing.set_by_label = user, label
    existing.save(update_fields=[*changed, "set_by", "set_by_label"])
    _history(customer=customer, tag=tag, action=History.UPDATED, source=source, label=label, evidence=evidence)
    return existing


@transaction.atomic
def customer_tag_remove(*, customer, tag: Tag, source: str, actor, reason: str = "") -> bool:
    """Take ``tag`` off ``customer`` with a "removed" history row; False (and nothing written) if absent."""
    if source not in TagSource.values:
        raise ApplicationError("tag_source_invalid", f"未知的标签来源：{source}")
    _user, label = _actor(actor)
    _lock_customer(customer)
    deleted, _ = CustomerTag.objects.filter(customer=customer, tag=tag).delete()
    if not deleted:
        return False
    _history(customer=customer, tag=tag, action=History.REMOVED, source=source, label=label, evidence=reason)
    tag_changed_notify(customer_id=customer.pk, tag_code=tag.code, action="removed", source=source)
    return True
