"""SMS and app-push providers behind one interface: ``send_batch(channel, messages)``.

MESSAGING_BASE_URL points at the provider gateway (the local sandbox in development and tests).
Every message carries the step run's idempotency key; the provider accepts a key once, so a retry
after a crash cannot reach the client twice. A transport failure or 5xx raises ProviderUnavailable
(the engine retries with backoff); a rejected message comes back per message.
"""

from dataclasses import dataclass

import requests
from django.conf import settings

from core.errors import ApplicationError

TIMEOUT = (3, 10)
_session = requests.Session()


class ProviderUnavailable(ApplicationError):
    def __init__(self, message: str):
        super().__init__("provider_unavailable", message, status_code=503)


@dataclass
class ProviderResult:
    accepted: bool
    message_id: str = ""
    duplicate: bool = False
    error: str = ""


def _base() -> str:
    base = settings.MESSAGING_BASE_URL.rstrip("/")
    if not base:
        raise ProviderUnavailable("未配置短信/推送服务（MESSAGING_BASE_URL）")
    return base


def _headers() -> dict:
    return {"Authorization": f"Bearer {settings.MESSAGING_API_TOKEN}"}


def delivery_reports(channel: str, *, after: int, limit: int = 1000) -> tuple[list[dict], int]:
    """One page of the provider's delivery reports (状态报告) after ``after`` → (reports, next cursor)."""
    path = {"sms": "sms", "app_push": "push"}[channel]
    try:
        response = _session.get(f"{_base()}/v1/{path}/reports", params={"after": after, "limit": limit},
                                timeout=TIMEOUT, headers=_headers())
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"短信/推送服务无法连接：{exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise ProviderUnavailable(f"短信/推送服务状态报告不可用（HTTP {response.status_code}）")
    body = response.json()
    return body.get("reports", []), int(body.get("next", after))


def send_batch(channel: str, messages: list[dict]) -> dict[str, ProviderResult]:
    """``messages``: ``[{"idempotency_key", "to", "content"}]`` → results by idempotency key."""
    if not messages:
        return {}
    path = {"sms": "sms", "app_push": "push"}[channel]
    try:
        response = _session.post(f"{_base()}/v1/{path}/send_batch", json={"messages": messages}, timeout=TIMEOUT,
                                 headers=_headers())
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"短信/推送服务无法连接：{exc.__class__.__name__}") from None
    if response.status_code >= 500:
        raise ProviderUnavailable(f"短信/推送服务暂时不可用（HTTP {response.status_code}）")
    if response.status_code != 200:
        raise ProviderUnavailable(f"短信/推送服务拒绝了请求（HTTP {response.status_code}）：{response.text[:200]}")
    results = {}
    for item in response.json().get("results", []):
        status = item.get("status")
        results[item.get("idempotency_key")] = ProviderResult(
            accepted=status in ("accepted", "duplicate"), message_id=item.get("message_id", ""),
            duplicate=status == "duplicate", error=item.get("error", ""))
    return results
