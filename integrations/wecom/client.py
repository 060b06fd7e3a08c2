"""The only code that talks HTTP to WeCom (企业微信): wechatpy's enterprise client, routed through
settings.WECOM_API_BASE_URL (gettoken included), with the access token in Redis (Django's cache) shared
by every worker and process.

Errors: 40014/42001/42009 (bad or expired token) drop the cached token, fetch a new one and retry the
call once (``client.token_refreshes`` counts it); 45009/45033/45035 (frequency limits) back off with
short, bounded sleeps and retry a few times; anything else raises ``WecomError`` with the errcode.
Calls wechatpy lacks go through ``client.post("externalcontact/...", data={...})``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from core.errors import ApplicationError
from integrations.wecom.error_codes import WECOM_ERRCODES, wecom_errcode_info

logger = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40014, 42001, 42009})
FREQUENCY_ERRORS = frozenset({45009, 45033, 45035})
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0)  # one sleep per retry; then the call fails
TIMEOUT_SECONDS = 15
TOKEN_LOCK_SECONDS = 10
TOKEN_EARLY_REFRESH_SECONDS = 300  # WeCom tokens live 7200 s; renew a little before

# errcodes in words, with what to do: integrations/wecom/error_codes.py (one table for every page)
ERROR_TEXT = {code: row.message for code, row in WECOM_ERRCODES.items()}


class WecomError(ApplicationError):
    """WeCom answered an errcode we do not handle (or could not be reached: errcode None)."""

    def __init__(self, errcode: int | None, errmsg: str = "", *, path: str = ""):
        self.errcode, self.errmsg, self.path = errcode, errmsg, path
        if errcode is None:
            message = _("无法连接企业微信（%(path)s）：%(errmsg)s") % {"path": path or "API", "errmsg": errmsg}
        else:
            row = wecom_errcode_info(errcode or -1)
            message = _("企业微信错误 %(errcode)s：%(meaning)s。%(advice)s（%(path)s：%(errmsg)s）") % {
                "errcode": errcode, "meaning": row.message, "advice": row.advice, "path": path or "API",
                "errmsg": errmsg}
        super().__init__("wecom_error", message, {"errcode": errcode, "errmsg": errmsg, "path": path},
                         status_code=502)


class WecomNotConfiguredError(WecomError):
    def __init__(self):
        ApplicationError.__init__(self, "wecom_not_configured",
                                  _("未配置企业微信：请设置 WECOM_CORP_ID 和 WECOM_SECRET"), status_code=503)
        self.errcode, self.errmsg, self.path = None, "not configured", ""


class DjangoCacheStorage(SessionStorage):
    """wechatpy session storage on Django's cache (Redis): one token for every process."""

    prefix = "wecom:"

    def get(self, key, default=None):
        value = cache.get(self.prefix + key)
        return default if value is None else value

    def set(self, key, value, ttl=None):
        cache.set(self.prefix + key, value, timeout=ttl)

    def delete(self, key):
        cache.delete(self.prefix + key)


class WecomClient(WeChatClient):
    def __init__(self, corp_id: str, secret: str, *, base_url: str, timeout: float = TIMEOUT_SECONDS,
                 backoff: tuple[float, ...] = BACKOFF_SECONDS):
        self.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"
        self.backoff = backoff
        self.token_refreshes = 0
        self.rate_limited = 0
        super().__init__(corp_id, secret, session=DjangoCacheStorage(), timeout=timeout, auto_retry=False)

    @property
    def access_token_key(self) -> str:
        # the base URL is part of the key: a token of one WeCom (or sandbox) is useless at another
        digest = hashlib.sha256(f"{self.API_BASE_URL}|{self.corp_id}|{self.secret}".encode()).hexdigest()[:16]
        return f"token:{self.corp_id}:{digest}"

    # --- the token ---------------------------------------------------------------------------------
    @property
    def access_token(self) -> str:
        token = self.session.get(self.access_token_key)
        if token:
            return token
        lock_key = f"wecom:{self.access_token_key}:lock"
        if cache.add(lock_key, 1, timeout=TOKEN_LOCK_SECONDS):
            try:
                token = self.session.get(self.access_token_key)  # another process may have just fetched it
                if not token:
                    self.fetch_access_token()
                    token = self.session.get(self.access_token_key)
            finally:
                cache.delete(lock_key)
            return token
        deadline = time.monotonic() + TOKEN_LOCK_SECONDS
        while time.monotonic() < deadline:  # someone else is fetching: wait for their token
            time.sleep(0.05)
            token = self.session.get(self.access_token_key)
            if token:
                return token
        self.fetch_access_token()
        return self.session.get(self.access_token_key)

    def fetch_access_token(self) -> dict:
        url = f"{self.API_BASE_URL}gettoken"
        try:
            response = self._http.get(url, params={"corpid": self.corp_id, "corpsecret": self.secret},
                                      timeout=self.timeout)
            result = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise WecomError(None, f"{type(exc).__name__}: {exc}", path="gettoken") from exc
        errcode = int(result.get("errcode") or 0)
        if errcode in FREQUENCY_ERRORS:
            raise WecomError(errcode, result.get("errmsg", ""), path="gettoken")
        if errcode or not result.get("access_token"):
            raise WecomError(errcode or -1, result.get("errmsg", "no access_token"), path="gettoken")
        expires_in = int(result.get("expires_in") or 7200)
        ttl = max(1, expires_in - min(TOKEN_EARLY_REFRESH_SECONDS, expires_in // 10))
        self.session.set(self.access_token_key, result["access_token"], ttl)
        return result

    def token_drop(self, token: str | None) -> None:
        """Forget the cached token if it is still the one that failed (another process may have renewed it)."""
        if token is None or self.session.get(self.access_token_key) == token:
            self.session.delete(self.access_token_key)

    def token_cached(self) -> bool:
        return bool(self.session.get(self.access_token_key))

    # --- every call --------------------------------------------------------------------------------
    def _request(self, method, url_or_endpoint, **kwargs):
        path = url_or_endpoint.split("/cgi-bin/")[-1].split("?")[0]
        params = {k: v for k, v in (kwargs.pop("params", None) or {}).items() if k != "access_token"}
        refreshed = False
        sleeps = list(self.backoff)
        while True:
            token = self.access_token
            try:
                return super()._request(method, url_or_endpoint, params={**params, "access_token": token}, **kwargs)
            except WeChatClientException as exc:
                errcode = exc.errcode
                if errcode is None:  # HTTP-level failure
                    status = getattr(exc.response, "status_code", None)
                    raise WecomError(None, f"HTTP {status}", path=path) from exc
                errcode = int(errcode)
                if errcode in TOKEN_ERRORS and not refreshed:
                    logger.info("wecom token rejected (%s) on %s; fetching a new one", errcode, path)
                    refreshed = True
                    self.token_refreshes += 1
                    self.token_drop(token)
                    continue
                if errcode in FREQUENCY_ERRORS and sleeps:
                    self.rate_limited += 1
                    delay = sleeps.pop(0)
                    logger.info("wecom frequency limit (%s) on %s; retrying in %.1fs", errcode, path, delay)
                    time.sleep(delay)
                    continue
                raise WecomError(errcode, str(exc.errmsg or ""), path=path) from exc
            except requests.RequestException as exc:
                raise WecomError(None, f"{type(exc).__name__}: {exc}", path=path) from exc


def wecom_configured() -> bool:
    return bool(settings.WECOM_CORP_ID and settings.WECOM_SECRET)


def wecom_client(*, backoff: tuple[float, ...] = BACKOFF_SECONDS) -> WecomClient:
    """A client for the configured corp (settings WECOM_CORP_ID, WECOM_SECRET, WECOM_API_BASE_URL)."""
    if not wecom_configured():
        raise WecomNotConfiguredError()
    return WecomClient(settings.WECOM_CORP_ID, settings.WECOM_SECRET, base_url=settings.WECOM_API_BASE_URL,
                       backoff=backoff)


def wecom_time(value) -> datetime | None:
    """A WeCom unix timestamp (seconds, int or str) → aware datetime; 0, missing or nonsense → None."""
    try:
        seconds = int(value or 0)
        return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
