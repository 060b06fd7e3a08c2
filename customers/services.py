"""Every write to customers and what belongs to them; audit rows go in the same transaction."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.crypto import blind_index, decrypt, mask_id_number, mask_mobile
from core.errors import ApplicationError
from core.events import NoteCreated, TaskCompleted, emit
from core.scoping import scope_for
from core.services import audit_record
from customers import selectors
from customers.error_codes import CustomerError
from customers.models import Customer, Note, Task

REVEALABLE = {"mobile": "mobile_encrypted", "id_number": "id_number_encrypted"}


def customer_touch_contact(*, customer_ids: list[int], at: datetime) -> None:
    """Move ``last_contact_at`` forward (never backwards) for the given customers."""
    Customer.objects.filter(pk__in=customer_ids).filter(
        Q(last_contact_at__isnull=True) | Q(last_contact_at__lt=at)
    ).update(last_contact_at=at)


@transaction.atomic
def customer_reveal(*, user, customer: Customer, field: str, reason: str, ip_address: str | None = None) -> str:
    """Plaintext of one personal field for a permitted user, with an audit row saying who, why, from where."""
    if field not in REVEALABLE or not scope_for(user).personal_data:
        raise ApplicationError(CustomerError.REVEAL_NOT_ALLOWED, "您的角色不能查看客户的个人信息", status_code=403)
    reason = (reason or "").strip()
    if len(reason) < 2:
        raise ApplicationError(CustomerError.REVEAL_REASON_REQUIRED, "请填写查看原因", [{"field": "reason"}])
    audit_record(actor=user, action="customer.reveal", target_type="customer", target_id=customer.external_id,
                 reason=reason, ip_address=ip_address, details={"field": field})
    return decrypt(getattr(customer, REVEALABLE[field]))


def pii_search_rate_key(user) -> str:
    return f"customers:pii-search:{user.pk}"


def _pii_search_count(user) -> int:
    """Count one exact search of ``user`` in the current window (which starts at their first search)."""
    key = pii_search_rate_key(user)
    if cache.add(key, 1, timeout=settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.add(key, 1, timeout=settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS)
        return 1


def customer_search(*, user, filters: dict, sort: str = selectors.DEFAULT_SORT, after: str | None = None,
                    limit: int = 50, with_total: bool = True, ip_address: str | None = None) -> selectors.CustomerPage:
    """The customer list for ``filters`` (selectors.customer_list). A search ``q`` with the shape of a mobile or
    ID number is an exact search of personal data: only for roles with personal data (the selector answers
    others by name and customer number and flags ``search_refused``), at most CUSTOMER_PII_SEARCH_LIMIT per user
    per window (then 429 ``pii_search_rate_limited``, the first refusal audited as
    ``customer.pii_search_limited``), and each one audited as ``customer.pii_search`` with the field, the term
    masked and keyed-hashed (never in clear) and the number of matches."""
    term = (filters.get("q") or "").strip()
    kind = selectors.customer_search_kind(term) if term else None
    exact = kind is not None and scope_for(user).personal_data
    if exact:
        count = _pii_search_count(user)
        limit_per_window = settings.CUSTOMER_PII_SEARCH_LIMIT
        if count > limit_per_window:
            if count == limit_per_window + 1:
                audit_record(actor=user, action="customer.pii_search_limited", ip_address=ip_address,
                             details={"limit": limit_per_window,
                                      "window_seconds": settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS})
            window = settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS
            per = "每小时" if window == 3600 else f"每 {max(window // 60, 1)} 分钟"
            raise ApplicationError(
                CustomerError.PII_SEARCH_RATE_LIMITED,
                f"按手机号或身份证号搜索过于频繁（{per}最多 {limit_per_window} 次），请稍后再试，或按姓名、客户号搜索",
                status_code=429)
    page = selectors.customer_list(user=user, filters=filters, sort=sort, after=after, limit=limit,
                                   with_total=with_total)
    if exact:
        normalised = selectors.customer_search_term(term)
        matches = page.total if page.total is not None else len(page.customers)
        single = page.customers[0].external_id if matches == 1 and page.customers else ""
        audit_record(actor=user, action="customer.pii_search", target_type="customer" if single else "",
                     target_id=single, ip_address=ip_address,
                     details={"field": kind, "matches": matches, "term_hash": blind_index(normalised),
                              "term_masked": mask_mobile(normalised) if kind == "mobile" else mask_id_number(normalised)})
    return page


@transaction.atomic
def note_create(*, author, customer: Customer, body: str) -> Note:
    body = (body or "").strip()
    if not body:
        raise ApplicationError(CustomerError.NOTE_EMPTY, "跟进记录不能为空", [{"field": "body"}])
    note = Note.objects.create(customer=customer, author=author, body=body)
    note.refresh_from_db(fields=["created_at"])
    customer_touch_contact(customer_ids=[customer.pk], at=note.created_at)
    emit(NoteCreated(note_id=note.pk, customer_id=customer.pk))
    return note


@dataclass
class TasksCreated:
    created: list[int] = field(default_factory=list)  # the new tasks' ids, in row order
    rows: list[tuple[int, int, str]] = field(default_factory=list)  # (task id, customer id, source label) of each
    out_of_scope: int = 0  # the assignee may not see the customer (or is inactive): no task
    no_assignee: int = 0  # nobody to give it to (a customer without an advisor)
    already: int = 0  # an open task of the same source exists (``skip_open``) or one was made since ``skip_since``


_TASK_ROWS = "customers_task_rows"


@transaction.atomic
def tasks_create(*, source: str, rows=None, customers=None, title: str = "", due_at: datetime | None = None,
                 source_label: str = "", skip_open: bool = False, skip_since: datetime | None = None,
                 now: datetime | None = None) -> TasksCreated:
    """The one way tasks are created (manual, SOP steps, a segment's bulk action, churn follow-ups, group invites):
    set-based, and never for an assignee who may not see the customer (core.scoping, the same rule as every page).

    ``rows``: dicts with ``customer_id``, ``assignee_id`` and optionally ``title``, ``due_at``, ``source_label``;
    or ``customers``: a Customer queryset, each task for the customer's advisor. The other arguments are the
    defaults for every row. ``skip_open`` / ``skip_since`` leave out customers that already have an open task of
    this source / one made since then. Returns the new ids in row order and what was skipped."""
    from core.scoping import staff_sees_customer_sql

    if source not in Task.Source.values:
        raise ApplicationError("task_source_invalid", f"未知的任务来源：{source}")
    now = now or timezone.now()
    due_at = due_at or now + timedelta(days=1)
    with connection.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_TASK_ROWS} (n serial, customer_id bigint, assignee_id bigint, "
                    "title varchar(200), due_at timestamptz, source_label varchar(200)) ON COMMIT DROP")
        cur.execute(f"TRUNCATE {_TASK_ROWS} RESTART IDENTITY")
        if customers is not None:
            sql, params = customers.order_by("pk").values("pk", "advisor_id").query.sql_with_params()
            cur.execute(f"INSERT INTO {_TASK_ROWS} (customer_id, assignee_id, title, due_at, source_label) "
                        f"SELECT m.id, m.advisor_id, %s, %s, %s FROM ({sql}) AS m(id, advisor_id)",
                        [title[:200], due_at, source_label[:200], *params])
        else:
            rows = list(rows or [])
            cur.execute(f"INSERT INTO {_TASK_ROWS} (customer_id, assignee_id, title, due_at, source_label) "
                        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[])",
                        [[r["customer_id"] for r in rows], [r.get("assignee_id") for r in rows],
                         [str(r.get("title") or title)[:200] for r in rows], [r.get("due_at") or due_at for r in rows],
                         [str(r.get("source_label") or source_label)[:200] for r in rows]])
        existing = ("EXISTS (SELECT 1 FROM customers_task k WHERE k.customer_id = r.customer_id AND k.source = %s "
                    "AND ((%s AND k.status = 'open') OR k.created_at >= %s))")
        cur.execute(f"""
            WITH checked AS (
                SELECT r.*, u.id IS NOT NULL AS has_assignee,
                       u.id IS NOT NULL AND {staff_sees_customer_sql(staff='u', customer='c')} AS in_scope,
                       {existing} AS exists_already
                FROM {_TASK_ROWS} r JOIN customers_customer c ON c.id = r.customer_id
                LEFT JOIN core_user u ON u.id = r.assignee_id),
            made AS (
                INSERT INTO customers_task (customer_id, assignee_id, title, due_at, source, source_label, status,
                                            outcome, outcome_note, created_at)
                SELECT customer_id, assignee_id, title, due_at, %s, source_label, 'open', '', '', %s
                FROM checked WHERE in_scope AND NOT exists_already ORDER BY n
                RETURNING id, customer_id, source_label)
            SELECT (SELECT coalesce(json_agg(json_build_array(id, customer_id, source_label) ORDER BY id), '[]')
                    FROM made),
                   (SELECT count(*) FILTER (WHERE has_assignee AND NOT in_scope) FROM checked),
                   (SELECT count(*) FILTER (WHERE NOT has_assignee) FROM checked),
                   (SELECT count(*) FILTER (WHERE in_scope AND exists_already) FROM checked)
        """, [source, skip_open, skip_since or datetime.max.replace(tzinfo=UTC), source, now])
        made, out_of_scope, no_assignee, already = cur.fetchone()
        cur.execute(f"TRUNCATE {_TASK_ROWS}")
    made = json.loads(made) if isinstance(made, str) else made
    return TasksCreated(created=[m[0] for m in made], rows=[tuple(m) for m in made], out_of_scope=out_of_scope,
                        no_assignee=no_assignee, already=already)


@transaction.atomic
def task_create(*, customer: Customer, assignee, title: str, due_at: datetime, source: str = Task.Source.MANUAL,
                source_label: str = "") -> Task:
    """One task (tasks_create); refused when the assignee may not see the customer."""
    result = tasks_create(source=source, rows=[{"customer_id": customer.pk, "assignee_id": getattr(assignee, "pk", None)}],
                          title=title, due_at=due_at, source_label=source_label)
    if not result.created:
        raise ApplicationError(CustomerError.TASK_ASSIGNEE_OUT_OF_SCOPE, "负责人不能看到该客户",
                               [{"field": "assignee"}])
    return Task.objects.get(pk=result.created[0])


@transaction.atomic
def task_complete(*, user, task: Task, outcome: str, note: str = "") -> Task:
    """Close an open task with an outcome; the outcome counts as a contact with the client."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.status != Task.Status.OPEN:
        raise ApplicationError(CustomerError.TASK_NOT_OPEN, "该任务已关闭")
    if outcome not in Task.Outcome.values:
        raise ApplicationError(CustomerError.TASK_OUTCOME_REQUIRED, "请选择任务结果", [{"field": "outcome"}])
    now = timezone.now()
    task.status, task.outcome, task.outcome_note, task.completed_at = Task.Status.DONE, outcome, note.strip(), now
    task.save(update_fields=["status", "outcome", "outcome_note", "completed_at"])
    if outcome != Task.Outcome.NOT_REACHED:
        customer_touch_contact(customer_ids=[task.customer_id], at=now)
    emit(TaskCompleted(task_id=task.pk))
    return task

