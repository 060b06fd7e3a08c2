"""The sidebar: one list of areas; who sees an entry is its feature's roles in core/access.py.

An entry appears only when its page exists (its URL name reverses), so an area joins the
navigation by registering its URL, and no role ever sees a link to a page it may not open.
"""

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from core.access import may


@dataclass(frozen=True)
class NavItem:
    key: str  # the feature in core.access.PERMISSIONS
    label: str
    url_name: str


NAV_ITEMS = [
    NavItem("home", _("工作台"), "home"),
    NavItem("customers", _("客户"), "customers:list"),
    NavItem("tasks", _("任务"), "customers:tasks"),
    NavItem("tags", _("标签"), "tagging:index"),
    NavItem("tiers", _("价值分层"), "tagging:tiers"),
    NavItem("segments", _("客群"), "segments:list"),
    NavItem("sop", _("SOP"), "sop:list"),
    NavItem("groups", _("社群"), "groups:list"),
    NavItem("wecom", _("企业微信"), "wecom:sync_runs"),
    NavItem("contact_ways", _("渠道活码"), "wecom:contact_ways"),
    NavItem("transfers", _("客户转接"), "wecom:transfers"),
    NavItem("dashboard", _("看板"), "dashboards:index"),
    NavItem("analyses", _("分析"), "dashboards:analyses_funnel"),
    NavItem("compliance", _("合规"), "compliance:index"),
    NavItem("custom_fields", _("自定义字段"), "customers:custom_field_list"),
    NavItem("integrations", _("集成"), "integrations:index"),
    NavItem("settings", _("设置"), "admin:index"),
    NavItem("users", _("用户与权限"), "staff:list"),
]


def nav_items_for(user) -> list[dict]:
    items = []
    for item in NAV_ITEMS:
        if not may(user, item.key):
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        items.append({"key": item.key, "label": item.label, "url": url})
    return items
