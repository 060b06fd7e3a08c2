"""Data scope, decided in one place.

advisor → own clients; branch_manager → own branch; hq_manager, operator, compliance,
admin → everyone (operator without personal data). API clients see everyone or one branch.
Every customer-owned queryset calls ``visible_to(principal)``, which asks this module.
"""

from dataclasses import dataclass

from django.db.models import Q

from core.models import Role

ALL_SCOPE_ROLES = {Role.HQ_MANAGER, Role.OPERATOR, Role.COMPLIANCE, Role.ADMIN}
PERSONAL_DATA_ROLES = {Role.ADVISOR, Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.COMPLIANCE, Role.ADMIN}


@dataclass(frozen=True)
class Scope:
    everything: bool = False
    branch_id: int | None = None
    advisor_id: int | None = None
    personal_data: bool = False

    def customer_q(self, prefix: str = "") -> Q:
        """A filter on customers reached through ``prefix`` (e.g. ``"customer__"``)."""
        if self.everything:
            return Q()
        if self.advisor_id is not None:
            return Q(**{f"{prefix}advisor_id": self.advisor_id})
        if self.branch_id is not None:
            return Q(**{f"{prefix}branch_id": self.branch_id})
        return Q(pk__in=[])


NOTHING = Scope()


def scope_for(principal) -> Scope:
    """The scope of a staff user or an API client; anything unknown sees nothing."""
    if principal is None or not getattr(principal, "is_authenticated", False) or not getattr(principal, "is_active", True):
        return NOTHING
    role = getattr(principal, "role", None)
    if role is None:  # an API client: one branch or all, personal data only masked in answers
        branch_id = getattr(principal, "branch_id", None)
        return Scope(everything=branch_id is None, branch_id=branch_id, personal_data=False)
    personal = role in PERSONAL_DATA_ROLES
    if role in ALL_SCOPE_ROLES:
        return Scope(everything=True, personal_data=personal)
    if role == Role.BRANCH_MANAGER and principal.branch_id:
        return Scope(branch_id=principal.branch_id, personal_data=personal)
    if role == Role.ADVISOR:
        return Scope(advisor_id=principal.pk, personal_data=personal)
    return NOTHING


def staff_sees_customer_sql(*, staff: str, customer: str) -> str:
    """The same rule as ``scope_for``, as a SQL predicate over a ``core_user`` alias and a ``customers_customer``
    alias, for set-based checks (may this assignee see this customer?)."""
    everyone = ", ".join(f"'{role}'" for role in sorted(ALL_SCOPE_ROLES))
    return (f"({staff}.is_active AND ({staff}.role IN ({everyone}) "
            f"OR ({staff}.role = '{Role.BRANCH_MANAGER}' AND {staff}.branch_id IS NOT NULL "
            f"AND {staff}.branch_id = {customer}.branch_id) "
            f"OR ({staff}.role = '{Role.ADVISOR}' AND {customer}.advisor_id = {staff}.id)))")
