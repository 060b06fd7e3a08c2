from datetime import datetime
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def yuan(value) -> str:
    """¥1,234,567.89"""
    if value in (None, ""):
        return "—"
    return f"¥{Decimal(value):,.2f}"


@register.filter
def wan(value) -> str:
    """Large sums for tiles: 1.23亿, 4,567.8万, ¥9,999."""
    if value in (None, ""):
        return "—"
    value = Decimal(value)
    if abs(value) >= Decimal(100_000_000):
        return _("%(n)s亿") % {"n": f"{value / Decimal(100_000_000):,.2f}"}
    if abs(value) >= Decimal(10_000):
        return _("%(n)s万") % {"n": f"{value / Decimal(10_000):,.1f}"}
    return f"¥{value:,.0f}"


@register.filter
def days_ago(value) -> str:
    """'今天', '12 天前', or '从未' for never."""
    if not value:
        return _("从未")
    if isinstance(value, datetime):
        value = timezone.localtime(value).date()
    days = (timezone.localdate() - value).days
    if days <= 0:
        return _("今天")
    return _("%(d)s 天前") % {"d": days}


@register.filter
def shanghai(value) -> str:
    """2026-11-23 14:05 in Asia/Shanghai."""
    if not value:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


@register.filter
def event_label(event_type: str) -> str:
    from customers.models import EVENT_TYPE_LABELS

    return str(EVENT_TYPE_LABELS.get(event_type, event_type))


@register.filter
def audit_action(code) -> str:
    """An audit action in words (core/audit.py)."""
    from core.audit import audit_action_label

    return audit_action_label(str(code))


@register.filter
def audit_details(details) -> list:
    """An audit row's details as (label, value) pairs in words (core/audit.py)."""
    from core.audit import audit_details_text

    return audit_details_text(details)


@register.filter
def may(user, feature: str) -> bool:
    """``{% if user|may:"sop" %}``: the permission table of core/access.py, in templates."""
    from core.access import may as user_may

    return user_may(user, feature)
