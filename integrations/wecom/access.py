"""Who may use the WeCom pages (sync runs, review queue): admins and operators.

The "integrations" nav area is admin-only (core/navigation.py), but WeCom is day-to-day operations work,
so operators may use these pages too; everyone else gets 404 (existence does not leak), as elsewhere.
Operators see no personal data here: mobiles are masked, as on every page."""

from django.http import Http404

from core.models import Role

WECOM_ROLES = frozenset({Role.ADMIN, Role.OPERATOR})


def wecom_may_manage(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "role", None) in WECOM_ROLES)


def require_wecom_manager(user) -> None:
    if not wecom_may_manage(user):
        raise Http404("WeCom pages are for admins and operators")
