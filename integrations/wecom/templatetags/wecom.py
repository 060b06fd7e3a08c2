"""``{% load wecom %}``: WeCom errcodes in words (integrations/wecom/error_codes.py)."""

from django import template

from integrations.wecom.error_codes import wecom_errcode_info

register = template.Library()


@register.filter
def wecom_errcode(errcode):
    """The errcode's row (``.code``, ``.message``, ``.advice``; ``{{ row }}`` prints all three), or None for none."""
    return wecom_errcode_info(errcode)
