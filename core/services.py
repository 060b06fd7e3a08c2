from django.db import transaction

from core.models import AuditLog, Branch, Role, User


def branch_upsert(*, code: str, name: str, region: str = "") -> Branch:
    branch, _ = Branch.objects.update_or_create(code=code, defaults={"name": name, "region": region})
    return branch


@transaction.atomic
def staff_upsert(
    *,
    username: str,
    password: str | None,
    role: str,
    display_name: str = "",
    branch: Branch | None = None,
    employee_code: str | None = None,
    wecom_userid: str | None = None,
) -> User:
    """Create or update a staff member; admins also get Django admin access."""
    user = User.objects.filter(username=username).first()
    created = user is None
    if created:
        user = User(username=username)
    user.role = Role(role)
    user.display_name = display_name
    user.branch = branch
    user.employee_code = employee_code
    user.wecom_userid = wecom_userid
    user.is_staff = user.is_superuser = role == Role.ADMIN
    if created and password:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def audit_record(
    *, actor, action: str, target_type: str = "", target_id: str = "", reason: str = "",
    ip_address: str | None = None, details: dict | None = None, actor_label: str | None = None,
) -> AuditLog:
    """Write one audit row; call it inside the service's transaction so both land or neither."""
    return AuditLog.objects.create(
        actor=actor if getattr(actor, "pk", None) and isinstance(actor, User) else None,
        actor_label=actor_label or (actor.username if hasattr(actor, "username") else str(actor)),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        reason=reason,
        ip_address=ip_address,
        details=details or {},
    )
