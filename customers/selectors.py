"""Every read of customers and what belongs to them starts from ``visible_to(user)``."""

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.http import Http404
from django.utils import timezone

from core.crypto import blind_index
from core.scoping import scope_for
from core.validators import ID_NUMBER_RE, MOBILE_RE, normalize_id_number, normalize_mobile
from customers.models import PRODUCT_TYPE_LABELS, BehaviourEvent, Customer, Note, Task, Touch, Trade

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # sorts never-contacted customers first


# sort key → (ORDER BY expression, direction); ties broken by id
SORTS = {
    "assets": ("total_assets", "desc"),
    "last_contact": ("last_contact_key", "asc"),  # never contacted first, then longest ago
    "opened": ("opened_key", "desc"),
    "name": ("name", "asc"),
}
DEFAULT_SORT = "assets"


def risk_expiry_cutoff(today: date | None = None) -> date:
    """Assessments on or before this date are expired (validity in months, default 24)."""
    today = today or timezone.localdate()
    months = settings.RISK_ASSESSMENT_VALID_MONTHS
    year, month = divmod(today.month - 1 - months, 12)
    day = min(today.day, 28)
    return date(today.year + year, month + 1, day)


def risk_assessment_expired(customer: Customer, today: date | None = None) -> bool:
    return customer.risk_assessed_at is None or customer.risk_assessed_at <= risk_expiry_cutoff(today)


@dataclass
class CustomerPage:
    customers: list
    total: int
    next_cursor: str | None
    sort: str
    filters: dict = field(default_factory=dict)
    # the term looked like a mobile or ID number but the user has no personal data: searched by name/number only
    search_refused: bool = False


def _encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode()


def _decode_cursor(cursor: str) -> list | None:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return values if isinstance(values, list) and len(values) == 2 else None
    except (ValueError, TypeError):
        return None


_CURSOR_TYPES = {"total_assets": Decimal, "last_contact_key": datetime.fromisoformat,
                 "opened_key": date.fromisoformat, "name": str}


def _cursor_values(after: str, key: str) -> tuple | None:
    """The (sort value, id) a cursor carries, or None when it is malformed (then paging restarts)."""
    values = _decode_cursor(after)
    if values is None:
        return None
    try:
        return _CURSOR_TYPES[key](values[0]), int(values[1])
    except (ValueError, TypeError, ArithmeticError):
        return None


def customer_search_kind(query: str) -> str | None:
    """``"mobile"`` or ``"id_number"`` when the search term has the shape of one (then it is an exact search
    of personal data), None for a name or customer number."""
    query = (query or "").strip()
    if MOBILE_RE.match(normalize_mobile(query)):
        return "mobile"
    if ID_NUMBER_RE.match(normalize_id_number(query)):
        return "id_number"
    return None


def customer_search_term(query: str) -> str:
    """The term as the blind index stores it (normalised mobile or ID number), for searching and auditing."""
    kind = customer_search_kind(query)
    if kind == "mobile":
        return normalize_mobile(query.strip())
    if kind == "id_number":
        return normalize_id_number(query)
    return (query or "").strip()


def customer_search_q(query: str, *, personal_data: bool = False) -> Q:
    """Exact mobile or ID number (through the keyed hash) for roles with personal data; otherwise, and for
    every other term, the exact customer number or the start of a name."""
    query = (query or "").strip()
    if not query:
        return Q()
    kind = customer_search_kind(query)
    if kind and personal_data:
        return Q(**{f"{kind}_hash": blind_index(customer_search_term(query))})
    return Q(external_id=query) | Q(name__startswith=query)


def customer_filter(qs, *, filters: dict, personal_data: bool = False):
    """Apply the list filters; unknown or malformed values are ignored (the form reports them). The search
    ``q`` matches mobile or ID number only with ``personal_data`` (core.scoping decides who has it)."""
    f = filters
    if f.get("q"):
        qs = qs.filter(customer_search_q(f["q"], personal_data=personal_data))
    if f.get("risk_level"):
        qs = qs.filter(risk_level__in=f["risk_level"])
    if f.get("risk_expired") == "1":
        qs = qs.filter(Q(risk_assessed_at__isnull=True) | Q(risk_assessed_at__lte=risk_expiry_cutoff()))
    if f.get("lifecycle_stage"):
        qs = qs.filter(lifecycle_stage__in=f["lifecycle_stage"])
    if f.get("funnel_stage"):
        qs = qs.filter(funnel_stage__in=f["funnel_stage"])
    if f.get("no_contact_days") is not None:
        since = timezone.now() - timedelta(days=int(f["no_contact_days"]))
        qs = qs.filter(Q(last_contact_at__isnull=True) | Q(last_contact_at__lt=since))
    if f.get("branch"):
        qs = qs.filter(branch__code=f["branch"])
    if f.get("advisor"):
        qs = qs.filter(advisor_id=f["advisor"])
    if f.get("tag"):
        from tagging.selectors import customer_filter_by_tag

        qs = customer_filter_by_tag(qs, f)
    if f.get("tier"):
        from tagging.tiers import customer_filter_by_tier

        qs = customer_filter_by_tier(qs, f)
    if f.get("custom"):  # [{"code", "field_type", "op", "value"}] from the form's custom field filters
        from customers.custom_fields import custom_field_q

        for condition in f["custom"]:
            qs = qs.filter(custom_field_q(**condition))
    return qs


def customer_list(*, user, filters: dict | None = None, limit: int = 50, after: str | None = None,
                  sort: str = DEFAULT_SORT, with_total: bool = True) -> CustomerPage:
    """One keyset page of the customers ``user`` may see, filtered and sorted."""
    filters = filters or {}
    sort = sort if sort in SORTS else DEFAULT_SORT
    key, direction = SORTS[sort]
    personal_data = scope_for(user).personal_data
    qs = customer_filter(Customer.objects.visible_to(user), filters=filters, personal_data=personal_data).annotate(
        last_contact_key=Coalesce("last_contact_at", EPOCH),
        opened_key=Coalesce("opened_at", date(1970, 1, 1)),
    )
    total = qs.count() if with_total else None
    cursor = _cursor_values(after, key) if after else None
    if cursor:
        value, last_id = cursor
        if direction == "desc":
            qs = qs.filter(Q(**{f"{key}__lt": value}) | Q(**{key: value, "id__gt": last_id}))
        else:
            qs = qs.filter(Q(**{f"{key}__gt": value}) | Q(**{key: value, "id__gt": last_id}))
    order = F(key).desc() if direction == "desc" else F(key).asc()
    from tagging.selectors import key_tags_for
    from tagging.tiers import annotate_tier

    rows = list(annotate_tier(qs.select_related("advisor", "branch")).order_by(order, "id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    tags = key_tags_for([c.pk for c in rows])
    for row in rows:
        row.key_tags = tags.get(row.pk, [])
    next_cursor = _encode_cursor([getattr(rows[-1], key), rows[-1].id]) if has_more else None
    return CustomerPage(customers=rows, total=total, next_cursor=next_cursor, sort=sort, filters=filters,
                        search_refused=not personal_data and customer_search_kind(filters.get("q", "")) is not None)


def customer_get_for_user(*, user, external_id: str) -> Customer:
    """The customer if ``user`` may see them; 404 otherwise, so existence never leaks."""
    customer = (
        Customer.objects.visible_to(user).select_related("advisor", "branch").filter(external_id=external_id).first()
    )
    if customer is None:
        raise Http404("customer not visible")
    return customer


def task_get_for_user(*, user, task_id: int) -> Task:
    """A task the user may act on: their own, or in their scope when they manage it."""
    task = Task.objects.visible_to(user).select_related("customer", "assignee").filter(pk=task_id).first()
    if task is None or (user.role == "advisor" and task.assignee_id != user.pk):
        raise Http404("task not visible")
    return task


def task_inbox(*, user, include_done_today: bool = True) -> dict:
    """Open tasks assigned to ``user``: overdue first, then due today, then upcoming."""
    now = timezone.now()
    today_end = timezone.localtime(now).replace(hour=23, minute=59, second=59)
    open_tasks = (
        Task.objects.visible_to(user).filter(assignee=user, status=Task.Status.OPEN)
        .select_related("customer").order_by("due_at", "id")
    )
    overdue = [t for t in open_tasks if t.due_at < now]
    today = [t for t in open_tasks if now <= t.due_at <= today_end]
    upcoming = [t for t in open_tasks if t.due_at > today_end][:50]
    done = []
    if include_done_today:
        start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        done = list(Task.objects.visible_to(user).filter(assignee=user, status=Task.Status.DONE,
                                                        completed_at__gte=start).select_related("customer"))
    return {"overdue": overdue, "today": today, "upcoming": upcoming, "done_today": done}


def trade_summary(*, customer: Customer) -> dict:
    trades = Trade.objects.filter(customer=customer)
    totals = trades.aggregate(count=Count("id"), amount=Coalesce(Sum("amount"), Decimal(0)), last=Max("traded_at"))
    by_type = list(trades.values("product__type").annotate(count=Count("id"), amount=Sum("amount"))
                   .order_by("-amount"))
    by_month = list(trades.annotate(month=TruncMonth("traded_at")).values("month")
                    .annotate(count=Count("id"), amount=Sum("amount")).order_by("month"))
    for row in by_type:
        row["label"] = PRODUCT_TYPE_LABELS.get(row["product__type"], row["product__type"])
    recent = list(trades.select_related("product").order_by("-traded_at", "-id")[:10])
    return {**totals, "by_type": by_type, "by_month": by_month, "recent": recent}


def customer_timeline(*, customer: Customer, limit: int = 30) -> list:
    return list(BehaviourEvent.objects.filter(customer=customer).order_by("-occurred_at", "-id")[:limit])


def customer_touches(*, customer: Customer, limit: int = 50) -> list:
    return list(Touch.objects.filter(customer=customer).select_related("staff").order_by("-occurred_at", "-id")[:limit])


def customer_notes(*, customer: Customer, limit: int = 50) -> list:
    return list(Note.objects.filter(customer=customer).select_related("author").order_by("-created_at", "-id")[:limit])


def customer_tasks(*, customer: Customer) -> list:
    return list(Task.objects.filter(customer=customer).select_related("assignee").order_by("status", "due_at")[:50])


def advisor_week_numbers(*, user) -> dict:
    """The advisor's own numbers this week (Monday 00:00 Asia/Shanghai onwards)."""
    now = timezone.localtime()
    week_start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Customer.objects.visible_to(user)
    return {
        "customers": mine.count(),
        "notes": Note.objects.visible_to(user).filter(author=user, created_at__gte=week_start).count(),
        "tasks_done": Task.objects.visible_to(user).filter(assignee=user, completed_at__gte=week_start).count(),
        "touches": Touch.objects.visible_to(user).filter(staff=user, occurred_at__gte=week_start).count(),
    }
