"""The one writer of customers' tags: every source — manual (one customer or a bulk selection), API, rules, SOP
steps, conversations, churn scoring, WeCom sync — sets and removes tags through ``customer_tags_set``, set-based.

What it guarantees, the same for everyone:
* **Expiry.** A row whose ``expires_at`` has passed counts as absent: it is moved to history as "expired" before
  anything else (so adding over an expired, not yet swept row adds it again, with history), exactly as the sweeper
  (``tags_expire``) and every reader (``CustomerTag.objects.current()``, the rule compiler) treat it.
* **Exclusive groups.** Adding a tag removes the customer's other tags of its group ("removed", with the evidence
  "互斥：由「…」替换"); writers of a grouped tag lock the customers first (in id order), so two writers of the same
  group cannot leave a customer holding both.
* **History.** One row per change: added, updated (source or evidence changed), removed, expired. A call that
  changes nothing writes nothing; refreshing the expiry alone (a rule that still matches) changes only the row.
* **Events.** core.events.TagChanged for every tag added or removed (after commit).
* **Sources.** A writer that must not override tags set another way (rules, churn scoring) passes
  ``overwrite=False``: a customer who holds the tag from another source keeps it as it is; removals can be limited
  to rows of one source (``only_source``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from core.events import TagChanged, emit
from tagging.models import Tag, TagSource

EXPIRED_EVIDENCE = "已过有效期"
_MEMBERS = "tagging_set_members"
_NOT_GIVEN = object()


@dataclass
class TagSetResult:
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)  # this tag taken off (add=False)
    displaced: list[tuple[int, int]] = field(default_factory=list)  # (customer, other tag of the group) taken off
    expired: int = 0  # rows found expired and moved to history first

    @property
    def changed(self) -> int:
        return len(self.added) + len(self.updated) + len(self.removed)


def _label(actor) -> tuple[int | None, str]:
    from core.models import User

    if isinstance(actor, User):
        return (actor.pk if actor.pk else None), actor.username
    return None, str(actor or "system")[:150]


def _stage_members(cur, *, customer_ids, customers, per_customer, evidence: str, evidence_data: dict) -> None:
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_MEMBERS} (customer_id bigint PRIMARY KEY, evidence text, "
                "evidence_data jsonb) ON COMMIT DROP")
    cur.execute(f"TRUNCATE {_MEMBERS}")
    data = json.dumps(evidence_data or {}, ensure_ascii=False)
    if per_customer is not None:
        rows = list(per_customer)
        cur.execute(f"INSERT INTO {_MEMBERS} SELECT DISTINCT ON (c) c, e, d::jsonb "
                    "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS m(c, e, d) ON CONFLICT DO NOTHING",
                    [[r[0] for r in rows], [r[1] for r in rows],
                     [json.dumps(r[2] or {}, ensure_ascii=False) for r in rows]])
    elif customers is not None:
        sql, params = customers.order_by().values("pk").query.sql_with_params()
        cur.execute(f"INSERT INTO {_MEMBERS} SELECT DISTINCT m.id, %s, %s::jsonb FROM ({sql}) AS m(id)",
                    [evidence, data, *params])
    else:
        cur.execute(f"INSERT INTO {_MEMBERS} SELECT DISTINCT c, %s, %s::jsonb FROM unnest(%s::bigint[]) AS m(c)",
                    [evidence, data, list(customer_ids)])


def _expire(cur, *, tag: Tag, now: datetime) -> int:
    """Expired rows of this tag (and of its exclusive group) held by the members: into history as expired."""
    cur.execute(f"""
        WITH gone AS (
            DELETE FROM tagging_customertag ct USING tagging_tag t
            WHERE ct.tag_id = t.id AND ct.customer_id IN (SELECT customer_id FROM {_MEMBERS})
              AND (t.id = %s OR (%s <> '' AND t.exclusive_group = %s))
              AND ct.expires_at IS NOT NULL AND ct.expires_at <= %s
            RETURNING ct.customer_id, ct.tag_id, ct.source)
        INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
        SELECT customer_id, tag_id, 'expired', source, 'system', %s, %s FROM gone
    """, [tag.pk, tag.exclusive_group, tag.exclusive_group, now, EXPIRED_EVIDENCE, now])
    return cur.rowcount


def _displace(cur, *, tag: Tag, source: str, label: str, now: datetime) -> list[tuple[int, int]]:
    if not tag.exclusive_group:
        return []
    cur.execute(f"""
        WITH gone AS (
            DELETE FROM tagging_customertag ct USING tagging_tag t
            WHERE ct.tag_id = t.id AND t.exclusive_group = %s AND t.id <> %s
              AND ct.customer_id IN (SELECT customer_id FROM {_MEMBERS})
            RETURNING ct.customer_id, ct.tag_id)
        INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
        SELECT customer_id, tag_id, 'removed', %s, %s, %s, %s FROM gone RETURNING customer_id, tag_id
    """, [tag.exclusive_group, tag.pk, source, label, f"互斥：由「{tag.name}」替换", now])
    return [(c, t) for c, t in cur.fetchall()]


def _upsert(cur, *, tag: Tag, source: str, user_id, label: str, expires_at, overwrite: bool, now: datetime):
    """Insert or change the members' rows; history for additions and for changes of source or evidence (a mere
    refresh of the expiry, as every run of a still-matching rule does, is not a change worth a history row)."""
    cur.execute(f"""
        WITH before AS (
            SELECT customer_id, source, evidence, evidence_data FROM tagging_customertag
            WHERE tag_id = %s AND customer_id IN (SELECT customer_id FROM {_MEMBERS})),
        up AS (
            INSERT INTO tagging_customertag AS ct
                (customer_id, tag_id, source, set_by_id, set_by_label, evidence, evidence_data, created_at, expires_at)
            SELECT customer_id, %s, %s, %s, %s, evidence, evidence_data, %s, %s FROM {_MEMBERS} ORDER BY customer_id
            ON CONFLICT (customer_id, tag_id) DO UPDATE
               SET source = EXCLUDED.source, set_by_id = EXCLUDED.set_by_id, set_by_label = EXCLUDED.set_by_label,
                   evidence = EXCLUDED.evidence, evidence_data = EXCLUDED.evidence_data,
                   expires_at = EXCLUDED.expires_at
             WHERE (%s OR ct.source = EXCLUDED.source)
               AND (ct.source, ct.evidence, ct.evidence_data, ct.expires_at)
                   IS DISTINCT FROM (EXCLUDED.source, EXCLUDED.evidence, EXCLUDED.evidence_data, EXCLUDED.expires_at)
            RETURNING customer_id, (xmax = 0) AS inserted, source, evidence, evidence_data),
        changed AS (
            SELECT up.customer_id, up.inserted, up.evidence FROM up LEFT JOIN before b ON b.customer_id = up.customer_id
            WHERE up.inserted OR (b.source, b.evidence, b.evidence_data)
                                 IS DISTINCT FROM (up.source, up.evidence, up.evidence_data)),
        history AS (
            INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
            SELECT customer_id, %s, CASE WHEN inserted THEN 'added' ELSE 'updated' END, %s, %s, evidence, %s
            FROM changed)
        SELECT customer_id, inserted FROM changed
    """, [tag.pk, tag.pk, source, user_id, label, now, expires_at, overwrite, tag.pk, source, label, now])
    rows = cur.fetchall()
    return [c for c, inserted in rows if inserted], [c for c, inserted in rows if not inserted]


def _remove(cur, *, tag: Tag, source: str, label: str, only_source: str | None, now: datetime) -> list[int]:
    """This tag off the members (expired rows went to history already); the reason is the members' evidence."""
    cur.execute(f"""
        WITH gone AS (
            DELETE FROM tagging_customertag ct
            WHERE ct.tag_id = %s AND ct.customer_id IN (SELECT customer_id FROM {_MEMBERS})
              AND (%s::text IS NULL OR ct.source = %s::text)
            RETURNING ct.customer_id),
        history AS (
            INSERT INTO tagging_customertaghistory (customer_id, tag_id, action, source, actor_label, evidence, at)
            SELECT g.customer_id, %s, 'removed', %s, %s, m.evidence, %s
            FROM gone g JOIN {_MEMBERS} m ON m.customer_id = g.customer_id)
        SELECT customer_id FROM gone
    """, [tag.pk, only_source, only_source, tag.pk, source, label, now])
    return [c for (c,) in cur.fetchall()]


@transaction.atomic
def customer_tags_set(*, tag: Tag, source: str, actor, add: bool = True, customer_ids=None, customers=None,
                      per_customer=None, evidence: str = "", evidence_data: dict | None = None,
                      expires_at=_NOT_GIVEN, overwrite: bool = True, only_source: str | None = None,
                      now: datetime | None = None) -> TagSetResult:
    """Set (``add``) or take off ``tag`` for many customers at once, by ``customer_ids``, a Customer queryset
    (``customers``, read inside the statement), or ``per_customer`` ``(customer_id, evidence, evidence_data)``
    rows when each customer has evidence of its own. ``expires_at`` defaults to the tag's own lifetime from now
    (None: no expiry). On removal ``evidence`` is the reason kept in history. See the module doc for the rules."""
    if source not in TagSource.values:
        raise ApplicationError("tag_source_invalid", f"未知的标签来源：{source}")
    if customer_ids is None and customers is None and per_customer is None:
        raise ApplicationError("no_customers", "请先选择客户")
    now = now or timezone.now()
    user_id, label = _label(actor)
    if expires_at is _NOT_GIVEN:
        expires_at = tag.expiry_from(now)
    result = TagSetResult()
    with connection.cursor() as cur:
        _stage_members(cur, customer_ids=customer_ids, customers=customers, per_customer=per_customer,
                       evidence=evidence, evidence_data=evidence_data or {})
        if tag.exclusive_group:  # serialise writers of the group per customer (one at a time holds both rows)
            cur.execute(f"SELECT 1 FROM customers_customer WHERE id IN (SELECT customer_id FROM {_MEMBERS}) "
                        "ORDER BY id FOR UPDATE")
        result.expired = _expire(cur, tag=tag, now=now)
        if add:
            result.displaced = _displace(cur, tag=tag, source=source, label=label, now=now)
            result.added, result.updated = _upsert(cur, tag=tag, source=source, user_id=user_id, label=label,
                                                   expires_at=expires_at, overwrite=overwrite, now=now)
        else:
            result.removed = _remove(cur, tag=tag, source=source, label=label, only_source=only_source, now=now)
        cur.execute(f"TRUNCATE {_MEMBERS}")
    codes = dict(Tag.objects.filter(pk__in={t for _c, t in result.displaced}).values_list("pk", "code"))
    for customer_id, tag_id in result.displaced:
        emit(TagChanged(customer_id=customer_id, tag_code=codes[tag_id], action="removed", source=source))
    for customer_id in result.added:
        emit(TagChanged(customer_id=customer_id, tag_code=tag.code, action="added", source=source))
    for customer_id in result.removed:
        emit(TagChanged(customer_id=customer_id, tag_code=tag.code, action="removed", source=source))
    return result
