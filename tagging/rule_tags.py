"""Rule tags and bulk tagging, set-based: one SQL statement per rule, never a loop over customers.

The rule is the segment rule language (segments/rules.py): the same compiler decides who matches.
"""

import json

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.services import audit_record
from segments.rules import rule_compile, rule_validate
from tagging.models import Tag, TagRule, TagSource


def _tags_changed(*, tag: Tag, added: list[int], removed: list[int], source: str) -> None:
    """Emit core.events.TagChanged for each change, as the single-customer service does."""
    from tagging.services import tag_changed_notify

    for customer_id in added:
        tag_changed_notify(customer_id=customer_id, tag_code=tag.code, action="added", source=source)
    for customer_id in removed:
        tag_changed_notify(customer_id=customer_id, tag_code=tag.code, action="removed", source=source)


def _matched_sql(rule: dict, now, customer_ids: list[int] | None):
    from customers.models import Customer

    qs = Customer.objects.filter(rule_compile(rule, now=now))
    if customer_ids is not None:
        qs = qs.filter(pk__in=customer_ids)
    return qs.values("id").query.sql_with_params()


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
    """Tag every matching customer and (optionally) untag rule-set tags that no longer match.

    With ``customer_ids`` only those customers are re-evaluated (incremental run after new trades or
    events). Idempotent: a rerun on the same data adds and removes nothing. Returns counts.
    """
    now = now or timezone.now()
    tag = tag_rule.tag
    rule_validate(tag_rule.rule)
    matched_sql, matched_params = _matched_sql(tag_rule.rule, now, customer_ids)
    expires = tag.expiry_from(now)
    label = f"规则：{tag.name}"
    evidence = json.dumps(tag_rule.rule, ensure_ascii=False)
    scope_sql = "AND ct.customer_id = ANY(%s)" if customer_ids is not None else ""
    scope_params = [customer_ids] if customer_ids is not None else []
    with connection.cursor() as cur:
        cur.execute(f"""
            WITH matched AS ({matched_sql}),
            upserted AS (
                INSERT INTO tagging_customertag
                    (customer_id, tag_id, source, set_by_label, evidence, evidence_data, created_at, expires_at)
                SELECT m.id, %s, 'rule', %s, %s, %s::jsonb, %s, %s FROM matched m
                ON CONFLICT (customer_id, tag_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
                    WHERE tagging_customertag.source = 'rule'
                RETURNING customer_id, (xmax = 0) AS inserted
            ),
            added AS (
                INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                SELECT customer_id, %s, 'added', 'rule', %s, %s, %s FROM upserted WHERE inserted
                RETURNING customer_id
            ),
            displaced AS (
                DELETE FROM tagging_customertag ct USING tagging_tag t
                WHERE ct.tag_id = t.id AND %s <> '' AND t.exclusive_group = %s AND t.id <> %s
                  AND ct.customer_id IN (SELECT customer_id FROM upserted WHERE inserted)
                RETURNING ct.customer_id, ct.tag_id
            ),
            displaced_history AS (
                INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                SELECT customer_id, tag_id, 'removed', 'rule', %s, '互斥标签被替换', %s FROM displaced
            ),
            removed AS (
                DELETE FROM tagging_customertag ct
                WHERE %s AND ct.tag_id = %s AND ct.source = 'rule' {scope_sql}
                  AND ct.customer_id NOT IN (SELECT id FROM matched)
                RETURNING ct.customer_id
            ),
            removed_history AS (
                INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                SELECT customer_id, %s, 'removed', 'rule', %s, '不再满足规则', %s FROM removed
            )
            SELECT (SELECT count(*) FROM upserted),
                   (SELECT coalesce(array_agg(customer_id), '{{}}') FROM added),
                   (SELECT coalesce(array_agg(customer_id), '{{}}') FROM removed)
        """, [*matched_params,
              tag.pk, label, evidence, json.dumps({"rule": tag_rule.rule}), now, expires,
              tag.pk, label, evidence, now,
              tag.exclusive_group, tag.exclusive_group, tag.pk,
              label, now,
              tag_rule.remove_when_unmatched, tag.pk, *scope_params,
              tag.pk, label, now])
        matched, added_ids, removed_ids = cur.fetchone()
    _tags_changed(tag=tag, added=added_ids, removed=removed_ids, source="rule")
    added, removed = len(added_ids), len(removed_ids)
    if customer_ids is None:
        TagRule.objects.filter(pk=tag_rule.pk).update(last_run_at=now, last_matched=matched)
    return {"matched": matched, "added": added, "removed": removed}


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
    ``customers``, a Customer queryset read inside the statement); returns rows changed."""
    if customers is not None:
        members_sql, members_params = customers.order_by().values("pk").query.sql_with_params()
        members_sql = f"SELECT * FROM ({members_sql}) m"
    elif customer_ids:
        members_sql, members_params = "SELECT unnest(%s::bigint[])", [customer_ids]
    else:
        raise ApplicationError("no_customers", "请先选择客户")
    now = timezone.now()
    label = getattr(actor, "username", None) or str(actor)
    user_id = actor.pk if getattr(actor, "pk", None) else None
    with connection.cursor() as cur:
        if add:
            expires = tag.expiry_from(now)
            cur.execute(f"""
                WITH ins AS (
                    INSERT INTO tagging_customertag
                        (customer_id, tag_id, source, set_by_id, set_by_label, evidence, evidence_data, created_at,
                         expires_at)
                    SELECT m.c, %s, %s, %s, %s, %s, '{{}}'::jsonb, %s, %s FROM ({members_sql}) AS m(c)
                    ON CONFLICT (customer_id, tag_id) DO NOTHING
                    RETURNING customer_id
                ),
                displaced AS (
                    DELETE FROM tagging_customertag ct USING tagging_tag t
                    WHERE ct.tag_id = t.id AND %s <> '' AND t.exclusive_group = %s AND t.id <> %s
                      AND ct.customer_id IN (SELECT customer_id FROM ins)
                    RETURNING ct.customer_id, ct.tag_id
                ),
                h1 AS (
                    INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                    SELECT customer_id, tag_id, 'removed', %s, %s, '互斥标签被替换', %s FROM displaced
                )
                INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                SELECT customer_id, %s, 'added', %s, %s, %s, %s FROM ins
                RETURNING customer_id
            """, [tag.pk, source, user_id, label, evidence, now, expires, *members_params,
                  tag.exclusive_group, tag.exclusive_group, tag.pk, source, label, now,
                  tag.pk, source, label, evidence, now])
        else:
            cur.execute(f"""
                WITH del AS (
                    DELETE FROM tagging_customertag WHERE tag_id = %s AND customer_id IN ({members_sql})
                    RETURNING customer_id
                )
                INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
                SELECT customer_id, %s, 'removed', %s, %s, %s, %s FROM del
                RETURNING customer_id
            """, [tag.pk, *members_params, tag.pk, source, label, evidence, now])
        changed_ids = [row[0] for row in cur.fetchall()]
    changed = len(changed_ids)
    _tags_changed(tag=tag, added=changed_ids if add else [], removed=[] if add else changed_ids, source=source)
    audit_record(actor=actor, action="tag.bulk_add" if add else "tag.bulk_remove", target_type="tag",
                 target_id=tag.code, details={"customers": len(customer_ids) if customers is None else customers.count(),
                                              "changed": changed})
    return changed


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
            SELECT customer_id, tag_id, 'expired', source, 'system', '已过有效期', %s FROM gone
        """, [now, now])
        return cur.rowcount
