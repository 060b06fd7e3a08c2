"""Reads of the 用户与权限 pages: staff with filters, who is locked out of the login form now, what a staff member
still holds. Clients and tasks are reached through their reverse relations on the user (``customers``, ``tasks``),
so core does not import the customers app."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from core.models import AuditLog, User


def staff_lockouts(*, now: datetime | None = None) -> dict[str, dict]:
    """Usernames the login form refuses right now (django-axes: ``AXES_FAILURE_LIMIT`` failures from one address
    within ``AXES_COOLOFF_TIME``, the ``[username, ip_address]`` lockout the settings configure) →
    ``since`` (when the locking failure happened, from its ``auth.lockout`` audit row), ``until`` (when it lifts by
    itself unless attempts continue), ``ip_addresses`` and ``failures``."""
    from axes.models import AccessAttempt

    now = now or timezone.now()
    cooloff = settings.AXES_COOLOFF_TIME
    groups = (AccessAttempt.objects.filter(attempt_time__gte=now - cooloff, username__isnull=False)
              .values("username", "ip_address")
              .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
              .filter(failures__gte=settings.AXES_FAILURE_LIMIT))
    locked: dict[str, dict] = {}
    for row in groups:
        entry = locked.setdefault(row["username"], {"ip_addresses": [], "failures": 0, "last": row["last"]})
        entry["ip_addresses"].append(row["ip_address"])
        entry["failures"] += row["failures"]
        entry["last"] = max(entry["last"], row["last"])
    if not locked:
        return {}
    started = dict(AuditLog.objects.filter(action="auth.lockout", target_id__in=list(locked), created_at__lte=now)
                   .values("target_id").annotate(at=Max("created_at")).values_list("target_id", "at"))
    for username, entry in locked.items():
        last = entry.pop("last")
        entry["since"] = started.get(username) or last
        entry["until"] = last + cooloff
        entry["ip_addresses"] = sorted(ip for ip in entry["ip_addresses"] if ip)
    return locked


def staff_list(*, filters: dict, lockouts: dict | None = None) -> QuerySet[User]:
    """Staff by ``q`` (username, name or employee code), ``role``, ``branch`` (code), ``status`` ("active" /
    "inactive") and ``locked``; each with ``client_count``. Active first, then by username."""
    rows = User.objects.select_related("branch").annotate(client_count=Count("customers"))
    q = (filters.get("q") or "").strip()
    if q:
        rows = rows.filter(Q(username__icontains=q) | Q(display_name__icontains=q) | Q(employee_code__icontains=q))
    if filters.get("role"):
        rows = rows.filter(role=filters["role"])
    if filters.get("branch"):
        rows = rows.filter(branch__code=filters["branch"])
    if filters.get("status") == "active":
        rows = rows.filter(is_active=True)
    elif filters.get("status") == "inactive":
        rows = rows.filter(is_active=False)
    if filters.get("locked"):
        rows = rows.filter(username__in=list(staff_lockouts() if lockouts is None else lockouts))
    return rows.order_by("-is_active", "username")


def staff_holdings(*, user: User) -> dict:
    """The clients ``user`` is the advisor of and their open tasks: what a 离职继承 would hand over."""
    return {"clients": user.customers.count(), "open_tasks": user.tasks.filter(status="open").count()}


def staff_audit_for(*, user: User, limit: int = 20) -> QuerySet[AuditLog]:
    """The latest audit rows about this staff account (its administration, lockouts, password changes)."""
    return AuditLog.objects.filter(target_type="user", target_id=user.username).order_by("-created_at", "-id")[:limit]
