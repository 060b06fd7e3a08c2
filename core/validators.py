"""Chinese identity data: GB 11643-1999 resident ID numbers and mainland mobile numbers."""

import re
from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = ID_NUMBER_RE = re.compile(r"^\d{17}[\dX]$")
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def id_number_check_digit(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def id_number_birth_date(id_number: str) -> date:
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def normalize_id_number(value: str) -> str:
    return (value or "").strip().upper()


def validate_id_number(value: str) -> None:
    value = normalize_id_number(value)
    if not _ID_RE.match(value):
        raise ValidationError(_("身份证号应为 18 位（最后一位可为 X）"), code="id_format")
    try:
        born = id_number_birth_date(value)
    except ValueError:
        raise ValidationError(_("身份证号中的出生日期无效"), code="id_birth_date") from None
    if born > date.today() or born.year < 1900:
        raise ValidationError(_("身份证号中的出生日期无效"), code="id_birth_date")
    if id_number_check_digit(value[:17]) != value[17]:
        raise ValidationError(_("身份证号校验位错误"), code="id_checksum")


def normalize_mobile(value: str) -> str:
    value = re.sub(r"[\s-]", "", value or "")
    return value[3:] if value.startswith("+86") else value


def validate_mobile(value: str) -> None:
    if not MOBILE_RE.match(normalize_mobile(value)):
        raise ValidationError(_("手机号应为 11 位中国大陆手机号"), code="mobile_format")


# --- identifiers other systems give us --------------------------------------------------------------------

EXTERNAL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EXTERNAL_ID_RULE = _("只能包含字母、数字和 . _ -，以字母或数字开头，最多 64 个字符")


class InvalidIdentifier(ValueError):
    def __init__(self, code: str, message):
        super().__init__(str(message))
        self.code, self.message = code, str(message)


def external_id_normalize(value) -> str:
    """The one normalisation of an identifier another system gives us (customer, trade and event external ids,
    product codes, customer references): a JSON string matching ``EXTERNAL_ID_RE`` once surrounding spaces are
    stripped. Numbers are refused rather than converted (``990000777001.0`` is not ``"990000777001"``): every
    check and every write sees exactly the string this returns. Raises InvalidIdentifier(code, message)."""
    if not isinstance(value, str):
        raise InvalidIdentifier("invalid_type", _("应为字符串（如 \"C0001\"），不接受数字或其他类型"))
    text = value.strip()
    if not text:
        raise InvalidIdentifier("required", _("必填"))
    if len(text) > 64:
        raise InvalidIdentifier("too_long", _("最多 64 个字符"))
    if not EXTERNAL_ID_RE.fullmatch(text):
        raise InvalidIdentifier("invalid_format", EXTERNAL_ID_RULE)
    return text


# --- times and amounts other systems give us -------------------------------------------------------------

MAX_UTC_OFFSET = timedelta(hours=14)  # the widest offset in use (Kiribati, +14:00); PostgreSQL refuses ±16:00 and more


def utc_offset_valid(moment) -> bool:
    offset = moment.utcoffset()
    return offset is None or abs(offset) <= MAX_UTC_OFFSET


class InvalidNumber(ValueError):
    def __init__(self, code: str, message):
        super().__init__(str(message))
        self.code, self.message = code, str(message)


def decimal_parse(value, *, integer_digits: int, places: int = 2, positive: bool = False):
    """A money amount or similar from JSON or a spreadsheet: a number or a numeric string (``1,234.5``, ``¥100``),
    rounded half-up to ``places``, with at most ``integer_digits`` digits before the point. Refuses booleans,
    NaN/Infinity and anything too large *before* rounding (``"1e30"`` would overflow decimal's context)."""
    from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InvalidNumber("invalid_type", _("应为数字或数字字符串"))
    text = repr(value) if isinstance(value, float) else str(value).strip()
    text = text.replace(",", "").replace("，", "").lstrip("¥￥")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidNumber("invalid_decimal", _("应为数字")) from None
    if not number.is_finite():
        raise InvalidNumber("invalid_decimal", _("应为数字"))
    if number != 0 and number.adjusted() >= integer_digits:
        raise InvalidNumber("invalid_decimal", _("数值过大"))
    number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if number != 0 and number.adjusted() >= integer_digits:  # rounding carried it over
        raise InvalidNumber("invalid_decimal", _("数值过大"))
    if positive and number <= 0:
        raise InvalidNumber("not_positive", _("金额必须大于 0"))
    if not positive and number < 0:
        raise InvalidNumber("negative", _("不能为负数"))
    return number


# --- text that PostgreSQL cannot store ------------------------------------------------------------------

UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")  # NUL, and lone UTF-16 surrogates JSON can carry
UNSTORABLE_MESSAGE = _("包含无法保存的字符（空字符或不成对的 Unicode 代理项）")


def text_storable(text: str) -> bool:
    return UNSTORABLE_CHARACTERS.search(text) is None


_DATE_SPELLINGS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
)
_MIDNIGHT_SUFFIX = re.compile(r"^(\S+)[ T]00:00(:00(\.0+)?)?$")


def date_from_text(text: str) -> date | None:
    """A date as people write it in imports and integrations: 2025-03-01, 2025/3/1, 2025.3.1, 20250301,
    2025年3月1日, optionally followed by a midnight time (a spreadsheet's date cell as text); None when the text is
    none of these or names no such day. Ranges (not in the future, from 1900 …) are the caller's."""
    text = _MIDNIGHT_SUFFIX.sub(r"\1", text)
    match = next((m for m in (p.match(text) for p in _DATE_SPELLINGS) if m), None)
    try:
        return date(*(int(g) for g in match.groups())) if match else None
    except ValueError:
        return None
