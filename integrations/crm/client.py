"""The only code that talks HTTP to the broker's CRM (the sandbox in integrations/crm/sandbox.py
documents the API). Base URL and token come from settings (env ``CRM_BASE_URL``, ``CRM_API_TOKEN``)."""

from __future__ import annotations

from datetime import datetime

import requests
from django.conf import settings

CRM_TIMEOUT_SECONDS = 15


class CrmError(Exception):
    """The CRM refused the request (4xx, bad answer): retrying the same request will not help."""


class CrmTemporaryError(CrmError):
    """No answer, or a 5xx: the same request may succeed later."""


class CrmNotConfiguredError(CrmError):
    pass


class CrmClient:
    def __init__(self, *, base_url: str | None = None, token: str | None = None,
                 timeout: float = CRM_TIMEOUT_SECONDS):
        self.base_url = (base_url if base_url is not None else settings.CRM_BASE_URL).rstrip("/")
        self.token = token if token is not None else settings.CRM_API_TOKEN
        if not self.base_url:
            raise CrmNotConfiguredError("CRM_BASE_URL is not set")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {self.token}", "Accept": "application/json"})

    def page(self, resource: str, *, updated_since: datetime | None, cursor: str | None,
             limit: int) -> tuple[list[dict], str | None]:
        """One page of records changed since ``updated_since`` (inclusive): ``(records, next_cursor)``."""
        params: dict = {"limit": limit}
        if updated_since is not None:
            params["updated_since"] = updated_since.isoformat()
        if cursor:
            params["cursor"] = cursor
        try:
            response = self.session.get(f"{self.base_url}/api/{resource}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CrmTemporaryError(f"{resource}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise CrmTemporaryError(f"{resource}: HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise CrmError(f"{resource}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            data, next_cursor = body["data"], body.get("next_cursor")
        except (ValueError, KeyError, TypeError) as exc:
            raise CrmError(f"{resource}: unexpected answer: {response.text[:200]}") from exc
        if not isinstance(data, list):
            raise CrmError(f"{resource}: data is not a list")
        return data, next_cursor or None

    def close(self) -> None:
        self.session.close()
