"""Chinese identity data: GB 11643-1999 resident ID numbers and mainland mobile numbers."""

import re
from datetime import date

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$")
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
