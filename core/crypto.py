"""Personal data at rest: Fernet encryption with key rotation, and a keyed hash for exact search.

Keys come from the environment: SCRM_FIELD_KEYS is a comma-separated list of Fernet keys, the
first one encrypts and all of them decrypt (rotate by putting a new key first, then run
``manage.py rotate_field_keys``); SCRM_BLIND_INDEX_KEY keys the HMAC used to find a customer
by exact mobile or ID number without decrypting. Outside production both fall back to keys
derived from SECRET_KEY so a fresh checkout works.
"""

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _derived_key(purpose: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(f"{purpose}:{settings.SECRET_KEY}".encode()).digest())


@cache
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.SCRM_FIELD_KEYS if k.strip()]
    if not keys:
        if settings.PRODUCTION:
            raise ImproperlyConfigured("Set SCRM_FIELD_KEYS (Fernet keys) in production")
        keys = [_derived_key("field-encryption").decode()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


@cache
def _index_key() -> bytes:
    key = settings.SCRM_BLIND_INDEX_KEY
    if not key:
        if settings.PRODUCTION:
            raise ImproperlyConfigured("Set SCRM_BLIND_INDEX_KEY in production")
        return _derived_key("blind-index")
    return key.encode()


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("A stored value cannot be decrypted with SCRM_FIELD_KEYS") from exc


def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode() if token else ""


def blind_index(value: str) -> str:
    """Deterministic keyed hash of a normalised value; equal inputs give equal outputs."""
    if not value:
        return ""
    return hmac.new(_index_key(), value.strip().upper().encode(), hashlib.sha256).hexdigest()


def mask_mobile(mobile: str) -> str:
    return f"{mobile[:3]}****{mobile[-4:]}" if len(mobile) >= 7 else "****"


def mask_id_number(id_number: str) -> str:
    """Only the last four characters (``**************1234``): the region code and birth date in the first
    fourteen would narrow an 18-digit number down to a handful of candidates."""
    return f"{'*' * (len(id_number) - 4)}{id_number[-4:]}" if len(id_number) > 7 else "****"
