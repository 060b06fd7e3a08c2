"""Custom fields (自定义字段): fields admins define on customers, their values, who may edit them, and how a condition
on one becomes SQL — one module, used by the 360° page, the list filter, the ingest pipeline (API, CRM sync, file
import), the segment rule compiler, the export and the API output.

Storage: ``Customer.custom_fields`` (jsonb) maps each field's ``code`` to its value — text and single choice as a
string, number as a JSON number, date as ``"YYYY-MM-DD"``, multiple choice as a list of options in option order. A
field without a value has no key (never ``null`` or ``[]``), so "has a value" is key existence. Values live on the
customer row rather than in a value table because every reader wants them with the customer (page, API body,
export batch: no join, no N+1) and the ingest writes them in its one upsert statement with the same change
detection; the GIN index answers equality and choices (``@>``) and "has a value" (``?``) at a million customers.
Ranges over numbers and dates are not index-backed (a value table would serve them index-only); they filter what the
other conditions and the scope leave, and a field that needs fast ranges gets an expression index of its own.

Definitions never reinterpret what is stored: ``code`` and ``type`` are fixed once created, deactivating hides a
field (its values stay and come back on reactivation), and a value that no longer fits the definition (an option
taken out, a tighter limit) stays readable and is flagged (``value_problem``) rather than dropped.

Semantics of conditions (list filter and the rule language alike): every comparison holds only for customers that
have a value — ``ne`` / ``not_in`` mean "has a value, and a different one"; ``is_not_set`` finds the others; and the
rule language's ``not`` is the exact complement (customers without a value included).
"""

from __future__ import annotations

import enum
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.db.models import DateField, DecimalField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.db.models.lookups import Contains
from django.utils.translation import gettext as _

from core.access import may, roles_for
from core.validators import UNSTORABLE_MESSAGE, date_from_text, text_storable
from customers.models import CUSTOM_FIELD_CODE_RE, CustomFieldDefinition, CustomFieldType

T = CustomFieldType

# Who may change a customer's values, on top of seeing the customer (core.scoping: an advisor sees only their own
# clients, a branch manager their branch). Everyone else who sees a customer reads them. Defining fields is the
# "custom_fields" entry of core/navigation.py (admins).
EDIT_ROLES = roles_for("custom_fields.edit")

TEXT_MAX_LENGTH = 500  # a text field's max_length may not exceed it (the default when unset)
MAX_OPTIONS = 100
OPTION_MAX_LENGTH = 50
MAX_ACTIVE_FIELDS = 50
NUMBER_LIMIT = Decimal(10) ** 15  # |value| below this, at most 15 significant digits (a float holds them exactly)
NUMBER_MAX_DECIMALS = 6
DATE_RANGE = (date(1900, 1, 1), date(2199, 12, 31))
LIST_SEPARATORS = re.compile(r"[,，、;；|\n]+")  # a multiple choice given as one cell / one string
OPTION_FORBIDDEN = re.compile(r"[,，、;；|\n\r\t]")
CODE_RE = re.compile(CUSTOM_FIELD_CODE_RE)
COLUMN_PREFIX = "cf:"  # import columns and flat ingest keys: "cf:<code>"


class CustomValueCode(enum.StrEnum):
    """``code`` of a rejected value (the ingest's row errors use the same strings)."""

    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    INACTIVE_FIELD = "inactive_field"
    INVALID_TYPE = "invalid_type"
    TOO_LONG = "too_long"
    INVALID_CHOICE = "invalid_choice"
    INVALID_DATE = "invalid_date"
    INVALID_DECIMAL = "invalid_decimal"
    OUT_OF_RANGE = "out_of_range"


C = CustomValueCode


class CustomValueInvalid(Exception):
    def __init__(self, code: CustomValueCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- permissions ----------------------------------------------------------------------------

def custom_fields_may_edit(user) -> bool:
    """May ``user`` change the values of a customer they can see? (Scope is checked by fetching the customer with
    ``customer_get_for_user``; this is the role part, in one place for the page, its guard and the service.)"""
    return may(user, "custom_fields.edit")


def custom_fields_may_define(user) -> bool:
    return may(user, "custom_fields")


# --- definitions ----------------------------------------------------------------------------

def definitions_active() -> list[CustomFieldDefinition]:
    return list(CustomFieldDefinition.objects.filter(active=True).order_by("order", "id"))


def definitions_by_code() -> dict[str, CustomFieldDefinition]:
    """Every definition, active or not, by code (the ingest tells "unknown" from "deactivated")."""
    return {d.code: d for d in CustomFieldDefinition.objects.order_by("order", "id")}


def definition_get(code: str) -> CustomFieldDefinition | None:
    if not isinstance(code, str) or not CODE_RE.match(code):
        return None
    return CustomFieldDefinition.objects.filter(code=code).first()


# --- cleaning one value ---------------------------------------------------------------------

def value_given(raw) -> bool:
    """None, blank text and an empty list mean "not given"."""
    if raw is None:
        return False
    if isinstance(raw, str):
        return bool(raw.strip())
    if isinstance(raw, list | tuple):
        return any(value_given(v) for v in raw)
    return True


def _text_of(raw) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise CustomValueInvalid(C.INVALID_TYPE, _("值的类型无效"))
    if isinstance(raw, float):
        raw = int(raw) if raw.is_integer() else raw  # spreadsheets hand numbers over as floats
    text = str(raw).strip()
    if not text_storable(text):
        raise CustomValueInvalid(C.INVALID_TYPE, UNSTORABLE_MESSAGE)
    return text


def decimal_text(number) -> str:
    """A number as people write it: no exponent, no trailing zeros (``1500``, ``0.25``)."""
    number = Decimal(str(number))
    text = format(number.normalize(), "f") if number else "0"
    return text


def _clean_text(definition: CustomFieldDefinition, raw) -> str:
    text = _text_of(raw)
    limit = definition.max_length or TEXT_MAX_LENGTH
    if len(text) > limit:
        raise CustomValueInvalid(C.TOO_LONG, _("最多 %(limit)d 个字符") % {"limit": limit})
    return text


def number_parse(raw) -> Decimal:
    """A number within the stored bounds (15 significant digits, 6 decimals, |x| < 10^15); thousands separators
    allowed in text."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise CustomValueInvalid(C.INVALID_TYPE, _("应为数字"))
    text = raw.strip().replace(",", "").replace("，", "") if isinstance(raw, str) else str(raw)
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        raise CustomValueInvalid(C.INVALID_DECIMAL, _("应为数字")) from None
    if not number.is_finite():
        raise CustomValueInvalid(C.INVALID_DECIMAL, _("应为数字"))
    if abs(number) >= NUMBER_LIMIT:
        raise CustomValueInvalid(C.OUT_OF_RANGE, _("绝对值应小于 10^15"))
    shape = number.normalize().as_tuple()
    if max(0, -shape.exponent) > NUMBER_MAX_DECIMALS:
        raise CustomValueInvalid(C.INVALID_DECIMAL, _("最多 %(n)d 位小数") % {"n": NUMBER_MAX_DECIMALS})
    if len(shape.digits) > 15:
        raise CustomValueInvalid(C.INVALID_DECIMAL, _("最多 15 位有效数字"))
    return number


def number_store(number: Decimal) -> int | float:
    """The JSON number stored for a parsed value (exact: at most 15 significant digits)."""
    return int(number) if number == number.to_integral_value() else float(number)


def _range_problem(definition: CustomFieldDefinition, number: Decimal) -> str | None:
    if definition.min_value is not None and number < definition.min_value:
        return _("应不小于 %(n)s") % {"n": decimal_text(definition.min_value)}
    if definition.max_value is not None and number > definition.max_value:
        return _("应不大于 %(n)s") % {"n": decimal_text(definition.max_value)}
    return None


def _clean_number(definition: CustomFieldDefinition, raw) -> int | float:
    number = number_parse(raw)
    problem = _range_problem(definition, number)
    if problem:
        raise CustomValueInvalid(C.OUT_OF_RANGE, problem)
    return number_store(number)




def date_parse(raw) -> date:
    """A calendar date (the import's spellings: 2025-03-01, 2025/3/1, 20250301, 2025年3月1日; a spreadsheet's date
    cell), 1900–2199. Unlike a birth date it may lie in the future (a product's maturity, a next review)."""
    if isinstance(raw, datetime):
        value = raw.date()
    elif isinstance(raw, date):
        value = raw
    else:
        value = date_from_text(_text_of(raw))
        if value is None:
            raise CustomValueInvalid(C.INVALID_DATE, _("日期格式应为 YYYY-MM-DD"))
    if not DATE_RANGE[0] <= value <= DATE_RANGE[1]:
        raise CustomValueInvalid(C.INVALID_DATE, _("日期应在 1900–2199 年之间"))
    return value


def _clean_date(definition: CustomFieldDefinition, raw) -> str:
    return date_parse(raw).isoformat()


def _option_of(definition: CustomFieldDefinition, text: str) -> str:
    options = list(definition.options or [])
    if text in options:
        return text
    folded = {o.casefold(): o for o in options}
    if text.casefold() in folded:
        return folded[text.casefold()]
    allowed = "/".join(options[:20]) + ("…" if len(options) > 20 else "")
    raise CustomValueInvalid(C.INVALID_CHOICE, _("取值无效，可选：%(allowed)s") % {"allowed": allowed})


def _clean_choice(definition: CustomFieldDefinition, raw) -> str:
    return _option_of(definition, _text_of(raw))


def _clean_multi(definition: CustomFieldDefinition, raw) -> list[str]:
    if isinstance(raw, list | tuple):
        items = [_text_of(v) for v in raw if value_given(v)]
    else:
        items = LIST_SEPARATORS.split(_text_of(raw))
    chosen = {_option_of(definition, item.strip()) for item in items if item.strip()}
    return [o for o in definition.options if o in chosen]


_CLEANERS = {T.TEXT: _clean_text, T.NUMBER: _clean_number, T.DATE: _clean_date, T.CHOICE: _clean_choice,
             T.MULTI_CHOICE: _clean_multi}


def custom_value_clean(definition: CustomFieldDefinition, raw):
    """The value to store for ``raw`` (given: see ``value_given``) under ``definition``'s current rules, or
    CustomValueInvalid with a code and the reason in words."""
    return _CLEANERS[definition.type](definition, raw)


def _unchanged(definition: CustomFieldDefinition, stored, raw) -> bool:
    """Is ``raw`` (as a form posts it) the stored value again?"""
    if stored is None or isinstance(raw, bool):
        return False
    if definition.type == T.MULTI_CHOICE:
        items = raw if isinstance(raw, list | tuple) else LIST_SEPARATORS.split(str(raw))
        return isinstance(stored, list) and sorted(str(i).strip() for i in items if str(i).strip()) == sorted(
            str(v) for v in stored)
    return isinstance(raw, str | int | float | Decimal) and str(raw).strip() == value_text(definition, stored)


def custom_values_clean(entries, *, definitions: dict[str, CustomFieldDefinition], blank_clears: bool = False,
                        stored: dict | None = None) -> tuple[dict, list[tuple[str, str, str]]]:
    """Clean ``entries`` — (error key, field code, raw value) triples — against ``definitions`` (by code, inactive
    included). Returns ``(values, errors)``: ``values`` maps code → value to store, or → None (remove the value)
    for a blank entry when ``blank_clears`` (the 360° page); otherwise a blank entry is "not given" and left out
    (the ingest: a batch never clears). ``errors`` are (error key, code, message); an unknown or deactivated
    field, a wrong value or a required field left blank (``blank_clears`` only) is one error each. With
    ``stored`` (the customer's current values), an entry that repeats its stored value keeps it as it is, even if
    it no longer fits the definition (a removed option): saving a form never forces an unrelated change."""
    values: dict = {}
    errors: list[tuple[str, str, str]] = []
    for key, code, raw in entries:
        definition = definitions.get(code) if isinstance(code, str) else None
        if definition is None:
            errors.append((key, C.UNKNOWN_FIELD, _("未知的自定义字段")))
            continue
        if not definition.active:
            errors.append((key, C.INACTIVE_FIELD, _("自定义字段已停用")))
            continue
        if not value_given(raw):
            if blank_clears:
                if definition.required:
                    errors.append((key, C.REQUIRED, _("必填")))
                else:
                    values[code] = None
            continue
        if stored is not None and _unchanged(definition, stored.get(code), raw):
            values[code] = stored[code]
            continue
        try:
            values[code] = custom_value_clean(definition, raw)
        except CustomValueInvalid as exc:
            errors.append((key, exc.code, exc.message))
    return values, errors


# --- reading values -------------------------------------------------------------------------

def value_text(definition: CustomFieldDefinition, value) -> str:
    """A stored value in words (page, export, chips); "" when there is none."""
    if value is None or value == [] or value == "":
        return ""
    if definition.type == T.MULTI_CHOICE and isinstance(value, list):
        return "、".join(str(v) for v in value)
    if definition.type == T.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        return decimal_text(value)
    return str(value)


def value_problem(definition: CustomFieldDefinition, value) -> str | None:
    """Why a STORED value no longer fits the current definition (an option taken out, a tighter limit), or None.
    The value is kept and shown; this only flags it."""
    if value is None:
        return None
    if definition.type in (T.CHOICE, T.MULTI_CHOICE):
        values = value if isinstance(value, list) else [value]
        gone = [str(v) for v in values if v not in (definition.options or [])]
        return _("已不在选项中：%(values)s") % {"values": "、".join(gone)} if gone else None
    try:
        custom_value_clean(definition, value)
    except CustomValueInvalid as exc:
        return _("不符合当前规则：%(reason)s") % {"reason": exc.message}
    return None


def custom_fields_rows(customer, definitions: list[CustomFieldDefinition]) -> list[dict]:
    """The customer's values for ``definitions`` (the active ones, in order) as the 360° page shows them."""
    stored = customer.custom_fields or {}
    rows = []
    for definition in definitions:
        value = stored.get(definition.code)
        rows.append({"definition": definition, "code": definition.code, "label": definition.label,
                     "value": value, "text": value_text(definition, value),
                     "problem": value_problem(definition, value)})
    return rows


# --- conditions: the list filter and the rule language --------------------------------------

OPS = {
    T.TEXT: ("eq", "ne", "in", "not_in", "contains", "is_set", "is_not_set"),
    T.NUMBER: ("eq", "ne", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"),
    T.DATE: ("eq", "ne", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"),
    T.CHOICE: ("eq", "ne", "in", "not_in", "is_set", "is_not_set"),
    T.MULTI_CHOICE: ("has_any", "has_all", "is_set", "is_not_set"),
}
LIST_OPS = frozenset({"in", "not_in", "has_any", "has_all"})
NO_VALUE_OPS = frozenset({"is_set", "is_not_set"})
MAX_LIST_VALUES = 100


def _typed(field_type: str, value):
    """A condition value as the compiler compares it: numbers as Decimal, dates as date, text as is."""
    if field_type == T.NUMBER:
        return Decimal(str(value))
    if field_type == T.DATE:
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    return value


def _json_scalar(field_type: str, value):
    """The JSON value a stored equal value has (containment compares JSON values)."""
    if field_type == T.NUMBER:
        return number_store(Decimal(str(value)))
    if field_type == T.DATE:
        return _typed(field_type, value).isoformat()
    return value


def custom_field_q(*, code: str, field_type: str, op: str, value=None) -> Q:
    """A Q over Customer for one condition on a custom field (a VALID one: the rule validator or the filter form
    checked it). Equality and choices are containment and "has a value" is key existence — the GIN index; ranges
    compare the cast value of customers that have one."""
    column = "custom_fields"
    has = Q(**{f"{column}__has_key": code})
    if op == "is_set":
        return has
    if op == "is_not_set":
        return ~has
    if op in ("eq", "ne"):
        equal = Q(**{f"{column}__contains": {code: _json_scalar(field_type, value)}})
        return equal if op == "eq" else has & ~equal
    if op in ("in", "not_in"):
        anyof = Q()
        for item in value:
            anyof |= Q(**{f"{column}__contains": {code: _json_scalar(field_type, item)}})
        return anyof if op == "in" else has & ~anyof
    if op == "has_any":
        anyof = Q()
        for item in value:
            anyof |= Q(**{f"{column}__contains": {code: [item]}})
        return anyof
    if op == "has_all":
        return Q(**{f"{column}__contains": {code: list(value)}})
    if op == "contains":
        return has & Q(Contains(KT(f"{column}__{code}"), value))
    target = (Cast(KT(f"{column}__{code}"), DecimalField(max_digits=40, decimal_places=10)) if field_type == T.NUMBER
              else Cast(KT(f"{column}__{code}"), DateField()))
    if op == "between":
        low, high = (_typed(field_type, v) for v in value)
        return has & Q(_lookup(target, "gte", low)) & Q(_lookup(target, "lte", high))
    return has & Q(_lookup(target, op, _typed(field_type, value)))


def _lookup(target, op: str, value):
    from django.db.models import lookups

    return {"gt": lookups.GreaterThan, "gte": lookups.GreaterThanOrEqual, "lt": lookups.LessThan,
            "lte": lookups.LessThanOrEqual}[op](target, value)
