"""Rule tags and bulk tagging, set-based through the one writer (tagging/writer.py), never a loop over customers.

The rule is the segment rule language (segments/rules.py): the same compiler decides who matches.
"""

import json

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.services import audit_record
from segments.rules import rule_compile, rule_validate
from tagging.models import Tag, TagRule, TagSource
from tagging.writer import EXPIRED_EVIDENCE, customer_tags_set


def tag_rule_preview(*, rule: dict, principal=None) -> int:
    """How many customers (in the principal's scope) the rule would tag now."""
    from segments.rules import rule_queryset

    return rule_queryset(rule, principal=principal).count()


def tag_rule_save(*, tag: Tag, rule: dict, enabled: bool, remove_when_unmatched: bool, actor) -> TagRule:
    rule_validate(rule)
    tag_rule, _ = TagRule.objects.update_or_create(
        tag=tag, defaults={"rule": rule, "enabled": enabled, "remove_when_unmatched": remove_when_unmatched,
                           "updated_at": timezone.now()})
    audit_record(actor=actor, action="tag_rule.save", target_type="tag", target_id=tag.code,
                 details={"enabled": enabled})
    return tag_rule


@transaction.atomic
def tag_rule_apply(*, tag_rule: TagRule, customer_ids: list[int] | None = None, now=None) -> dict:
    """Tag every matching customer and (optionally) untag rule-set tags that no longer match, through the one
    writer (tagging/writer.py): a tag set another way (by hand, the API) is never overridden or taken off.

    With ``customer_ids`` only those customers are re-evaluated (incremental run after new trades or
    events). Idempotent: a rerun on the same data adds and removes nothing. Returns counts.
    """
    from customers.models import Customer

    now = now or timezone.now()
    tag = tag_rule.tag
    rule_validate(tag_rule.rule)
    population = Customer.objects.all() if customer_ids is None else Customer.objects.filter(pk__in=customer_ids)
    matched = population.filter(rule_compile(tag_rule.rule, now=now))
    label = f"规则：{tag.name}"
    added = customer_tags_set(tag=tag, source=TagSource.RULE, actor=label, customers=matched, overwrite=False,
                              evidence=json.dumps(tag_rule.rule, ensure_ascii=False),
                              evidence_data={"rule": tag_rule.rule}, now=now)
    removed = []
    if tag_rule.remove_when_unmatched:
        unmatched = population.filter(tags__tag=tag, tags__source=TagSource.RULE).exclude(
            pk__in=matched.values("pk"))
        removed = customer_tags_set(tag=tag, source=TagSource.RULE, actor=label, add=False, customers=unmatched,
                                    only_source=TagSource.RULE, evidence="不再满足规则", now=now).removed
    count = matched.count()
    if customer_ids is None:
        TagRule.objects.filter(pk=tag_rule.pk).update(last_run_at=now, last_matched=count)
    return {"matched": count, "added": len(added.added), "removed": len(removed)}


def tag_rules_apply_all(*, customer_ids: list[int] | None = None) -> dict:
    """Every enabled rule, one transaction each (scheduled hourly; incremental with customer_ids)."""
    results = {}
    for tag_rule in TagRule.objects.filter(enabled=True, tag__active=True).select_related("tag"):
        results[tag_rule.tag.code] = tag_rule_apply(tag_rule=tag_rule, customer_ids=customer_ids)
    return results


@transaction.atomic
def customer_tags_bulk_set(*, customer_ids: list[int] | None = None, customers=None, tag: Tag, add: bool, actor,
                           evidence: str = "", source: str = TagSource.MANUAL) -> int:
    """Tag or untag many customers at once (list selection, SOP step: ``customer_ids``; a segment's members:
    ``customers``, a Customer queryset read inside the statement) through the one writer; audited; returns the
    customers whose tag was added, changed or removed."""
    if customers is None and not customer_ids:
        raise ApplicationError("no_customers", "请先选择客户")
    result = customer_tags_set(tag=tag, source=source, actor=actor, add=add, customer_ids=customer_ids,
                               customers=customers, evidence=evidence)
    audit_record(actor=actor, action="tag.bulk_add" if add else "tag.bulk_remove", target_type="tag",
                 target_id=tag.code, details={"customers": len(customer_ids) if customers is None else customers.count(),
                                              "changed": result.changed})
    return result.changed


@transaction.atomic
def tags_expire(*, now=None) -> int:
    """Move expired tags into history (they already stopped counting at expires_at)."""
    now = now or timezone.now()
    with connection.cursor() as cur:
        cur.execute("""
            WITH gone AS (
                DELETE FROM tagging_customertag WHERE expires_at IS NOT NULL AND expires_at <= %s
                RETURNING customer_id, tag_id, source
            )
            INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
            SELECT customer_id, tag_id, 'expired', source, 'system', %s, %s FROM gone
        """, [now, EXPIRED_EVIDENCE, now])
        return cur.rowcount
