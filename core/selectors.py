from django.db.models import Q

from core.models import AuditLog


def audit_list(*, filters: dict):
    """Audit rows filtered by who, whose data, action and time (newest first)."""
    qs = AuditLog.objects.all()
    if filters.get("actor"):
        qs = qs.filter(actor_label__icontains=filters["actor"])
    if filters.get("target"):
        qs = qs.filter(Q(target_id=filters["target"]))
    if filters.get("action"):
        qs = qs.filter(action=filters["action"])
    if filters.get("since"):
        qs = qs.filter(created_at__date__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(created_at__date__lte=filters["until"])
    return qs.order_by("-created_at", "-id")


def audit_actions() -> list[str]:
    return list(AuditLog.objects.order_by().values_list("action", flat=True).distinct())
