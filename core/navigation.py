"""The sidebar: one list, each entry naming the roles that may use it.

An entry appears only when its page exists (its URL name reverses), so an area joins the
navigation by registering its URL, and no role ever sees a link to a page it may not open.
"""

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from core.models import Role

ALL = frozenset(Role.values)
MANAGERS = frozenset({Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.ADMIN})
OPERATIONS = frozenset({Role.OPERATOR, Role.BRANCH_MANAGER, Role.HQ_MANAGER, Role.ADMIN})


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    url_name: str
    roles: frozenset


NAV_ITEMS = [
    NavItem("home", _("工作台"), "home", ALL),
    NavItem("customers", _("客户"), "customers:list", ALL),
    NavItem("tasks", _("任务"), "customers:tasks", frozenset({Role.ADVISOR, Role.BRANCH_MANAGER, Role.ADMIN})),
    NavItem("tags", _("标签"), "tagging:index", frozenset({Role.OPERATOR, Role.ADMIN})),
    NavItem("tiers", _("价值分层"), "tagging:tiers", OPERATIONS),
    NavItem("segments", _("客群"), "segments:list", OPERATIONS),
    NavItem("sop", _("SOP"), "sop:list", frozenset({Role.OPERATOR, Role.ADMIN})),
    NavItem("groups", _("社群"), "groups:list", frozenset({Role.ADVISOR, Role.OPERATOR, Role.BRANCH_MANAGER, Role.ADMIN})),
    NavItem("wecom", _("企业微信"), "wecom:sync_runs", frozenset({Role.OPERATOR, Role.ADMIN})),
    NavItem("contact_ways", _("渠道活码"), "wecom:contact_ways", frozenset({Role.OPERATOR, Role.ADMIN})),
    NavItem("transfers", _("客户转接"), "wecom:transfers", frozenset({Role.BRANCH_MANAGER, Role.ADMIN})),
    NavItem("dashboard", _("看板"), "dashboards:index", MANAGERS | {Role.ADVISOR, Role.OPERATOR}),
    NavItem("analyses", _("分析"), "dashboards:analyses_funnel", MANAGERS | {Role.OPERATOR}),
    NavItem("compliance", _("合规"), "compliance:index", frozenset({Role.COMPLIANCE, Role.ADMIN})),
    NavItem("custom_fields", _("自定义字段"), "customers:custom_field_list", frozenset({Role.ADMIN})),
    NavItem("integrations", _("集成"), "integrations:index", frozenset({Role.ADMIN})),
    NavItem("settings", _("设置"), "admin:index", frozenset({Role.ADMIN})),
    NavItem("users", _("用户与权限"), "staff:list", frozenset({Role.ADMIN})),
]


def nav_items_for(user) -> list[dict]:
    if not getattr(user, "is_authenticated", False):
        return []
    items = []
    for item in NAV_ITEMS:
        if user.role not in item.roles:
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        items.append({"key": item.key, "label": item.label, "url": url})
    return items


def user_may_use(user, key: str) -> bool:
    return any(i.key == key and user.role in i.roles for i in NAV_ITEMS)
