from datetime import datetime

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from core import crypto
from core.validators import id_number_check_digit, validate_id_number, validate_mobile


def _id(birth="19900307", serial="123"):
    first17 = f"110101{birth}{serial}"
    return first17 + id_number_check_digit(first17)


def test_id_number_check_digit_matches_a_published_example():
    # GB 11643-1999 example: 11010519491231002X
    assert id_number_check_digit("11010519491231002") == "X"
    validate_id_number("11010519491231002X")
    validate_id_number("11010519491231002x")  # lower-case x is normalised


@pytest.mark.parametrize("bad, code", [
    ("11010519491231002", "id_format"),
    ("110105194912310021", "id_checksum"),
    ("110105194913310023", "id_birth_date"),
])
def test_id_number_rejections(bad, code):
    with pytest.raises(ValidationError) as err:
        validate_id_number(bad)
    assert err.value.code == code


@time_machine.travel(timezone.make_aware(datetime(2027, 1, 1, 2, 0)), tick=False)  # 2026-12-31 18:00 UTC
def test_a_birth_date_after_today_in_shanghai_is_refused():
    validate_id_number(_id(birth="20270101"))  # born today: the day is Shanghai's, not UTC's
    with pytest.raises(ValidationError) as err:
        validate_id_number(_id(birth="20270102"))
    assert err.value.code == "id_birth_date"


@pytest.mark.parametrize("mobile, ok", [("13812345678", True), ("+86 138-1234-5678", True), ("12812345678", False),
                                        ("1381234567", False), ("abc", False)])
def test_mobile_format(mobile, ok):
    if ok:
        validate_mobile(mobile)
    else:
        with pytest.raises(ValidationError):
            validate_mobile(mobile)


def test_encryption_round_trip_and_key_rotation(settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SCRM_FIELD_KEYS = [old]
    crypto._fernet.cache_clear()
    token = crypto.encrypt("13812345678")
    assert "13812345678" not in token and crypto.decrypt(token) == "13812345678"
    settings.SCRM_FIELD_KEYS = [new, old]  # rotation: the new key encrypts, the old one still decrypts
    crypto._fernet.cache_clear()
    assert crypto.decrypt(token) == "13812345678"
    rotated = crypto.rotate(token)
    settings.SCRM_FIELD_KEYS = [new]
    crypto._fernet.cache_clear()
    assert crypto.decrypt(rotated) == "13812345678"
    crypto._fernet.cache_clear()


def test_blind_index_is_keyed_and_deterministic():
    assert crypto.blind_index("13812345678") == crypto.blind_index(" 13812345678 ")
    assert crypto.blind_index("13812345678") != crypto.blind_index("13812345679")
    import hashlib

    assert crypto.blind_index("13812345678") != hashlib.sha256(b"13812345678").hexdigest()


def test_masking():
    assert crypto.mask_mobile("13812345678") == "138****5678"
    assert crypto.mask_id_number("11010519491231002X") == "**************002X"
