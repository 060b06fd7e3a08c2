"""Who may do what: one table, feature → roles. Everything that decides by role reads it.

* the sidebar (core/navigation.py) shows an entry to exactly the roles of its feature;
* views call ``require(user, feature)`` (or wear ``@feature_required(feature)``): anyone else gets 404, so a page's
  existence does not leak;
* templates ask ``{% if user|may:"sop" %}`` (core/templatetags/scrm.py);
* services that act for a user check ``may(user, feature)`` before acting.

Which customers and branches a permitted user reaches is the other half of access and lives in core/scoping.py.
The REST API is not role-based: an API key carries scopes (integrations.models.ApiScope), declared per endpoint.

``URL_FEATURES`` declares the feature that guards every URL of the project; tests/test_access.py walks every URL
pattern, fails on one that is not declared, and checks each page without an object in its path answers each
role as this table says.
"""

from fnmatch import fnmatchcase
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404

from core.models import Role

ALL = frozenset(Role.values)
ADMIN = frozenset({Role.ADMIN})
MANAGERS = frozenset({Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.ADMIN})
OPERATIONS = frozenset({Role.OPERATOR, Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.ADMIN})
OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})

PERMISSIONS: dict[str, frozenset] = {
    # areas: the sidebar entries of the same key (core/navigation.py)
    "home": ALL,
    "customers": ALL,
    "tasks": frozenset({Role.ADVISOR, Role.BRANCH_MANAGER, Role.ADMIN}),
    "tags": OPERATORS,  # the tag taxonomy, rule tags and conversation rules
    "tiers": OPERATIONS,
    "segments": OPERATIONS,
    "sop": OPERATORS,
    "groups": frozenset({Role.ADVISOR, Role.OPERATOR, Role.BRANCH_MANAGER, Role.ADMIN}),
    "wecom": OPERATORS,
    "contact_ways": OPERATORS,
    "transfers": frozenset({Role.BRANCH_MANAGER, Role.ADMIN}),
    "dashboard": MANAGERS | {Role.ADVISOR, Role.OPERATOR},
    "analyses": MANAGERS | {Role.OPERATOR},
    "compliance": frozenset({Role.COMPLIANCE, Role.ADMIN}),
    "custom_fields": ADMIN,  # define the fields
    "integrations": ADMIN,
    "settings": ADMIN,
    "users": ADMIN,
    # actions inside an area
    "customers.import": OPERATORS,
    "custom_fields.edit": frozenset({Role.ADVISOR, Role.BRANCH_MANAGER, Role.ADMIN}),  # a client's values
    "tags.apply": frozenset({Role.ADVISOR, Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.OPERATOR, Role.ADMIN}),
    "tag_suggestions.decide": frozenset({Role.ADVISOR, Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.ADMIN}),
    "tiers.run": frozenset({Role.OPERATOR, Role.HQ_MANAGER, Role.ADMIN}),
    "tiers.strategy": OPERATORS,
    "groups.edit_all": OPERATORS,  # every group, not only the ones the user owns
    "analyses.recompute": frozenset({Role.HQ_MANAGER, Role.OPERATOR, Role.ADMIN}),
}

# Not a role decision: reached without a session, or with an API key, or by every signed-in user.
PUBLIC = "public"        # login, health, language switch; WeCom's signed callback
SIGNED_IN = "signed_in"  # one's own password and logout
API_KEY = "api_key"      # /api/v1: a key's scopes (integrations/api), not roles

# URL pattern name (glob) → the feature that guards it; the first match wins.
URL_FEATURES: list[tuple[str, str]] = [
    ("home", "home"),
    ("customers:tasks", "tasks"), ("customers:task_complete", "tasks"), ("sop:wecom_task_*", "tasks"),
    ("customers:custom_field_*", "custom_fields"),
    ("customers:*", "customers"),
    ("customers_import:*", "customers.import"),
    ("tagging:tiers", "tiers"), ("tagging:tier_run_status", "tiers"), ("tagging:tier_strategy_edit", "tiers.strategy"),
    ("tagging:customer_tag*", "customers"), ("tagging:bulk", "tags.apply"),
    ("tagging:suggestion_*", "tag_suggestions.decide"),
    ("tagging:*", "tags"),
    ("compliance:*", "compliance"),
    ("sop:approvals", "compliance"), ("sop:template_review", "compliance"), ("sop:phrase*", "compliance"),
    ("sop:blocked*", "compliance"), ("sop:guards", "compliance"),
    ("sop:*", "sop"),
    ("staff:*", "users"),
    ("segments:tag_rule_edit", "tags"),  # rule tags in the segments' builder
    ("segments:*", "segments"),
    ("groups:*", "groups"),
    ("dashboards:index", "dashboard"), ("dashboards:live_stream", "dashboard"),
    ("dashboards:churn*", "dashboard"),
    ("dashboards:*", "analyses"),
    ("wecom:callback", PUBLIC),
    ("wecom:callback_events", "integrations"),
    ("wecom:contact_way*", "contact_ways"),
    ("wecom:transfer*", "transfers"),
    ("wecom:*", "wecom"),
    ("integrations:*", "integrations"),
    ("admin:*", "settings"),
    ("api:*", API_KEY), ("api_not_found", API_KEY),
    ("healthz", PUBLIC), ("login", PUBLIC), ("set_language", PUBLIC),
    ("logout", SIGNED_IN), ("password_change", SIGNED_IN), ("password_change_done", SIGNED_IN),
]


def roles_for(feature: str) -> frozenset:
    return PERMISSIONS[feature]


def may(user, feature: str) -> bool:
    """Whether ``user`` may use ``feature`` (an unknown feature is a programming error: KeyError)."""
    roles = PERMISSIONS[feature]
    return bool(getattr(user, "is_authenticated", False)) and getattr(user, "role", None) in roles


def require(user, feature: str) -> None:
    """404 for a user whose role may not use ``feature`` (the page does not exist for them)."""
    if not may(user, feature):
        raise Http404(f"not for this role ({feature})")


def feature_required(feature: str):
    """View decorator: signed in, and a role that may use ``feature``."""
    PERMISSIONS[feature]  # fail at import on a typo

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            require(request.user, feature)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def url_feature(name: str) -> str | None:
    """The feature declared for a URL pattern name, or None when it is not declared."""
    return next((feature for pattern, feature in URL_FEATURES if fnmatchcase(name, pattern)), None)
