"""API clients: creating one (the key is shown once), deactivating it, and finding it from a key.

Keys look like ``scrm_<prefix8>_<secret>``. Only ``key_prefix`` (to find the row) and the
sha256 of the whole key are stored; the comparison is constant-time.
"""

import hashlib
import hmac
import re
import secrets
import string

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from core.errors import ApplicationError
from core.models import Branch
from core.services import audit_record
from integrations.models import FIRM_WIDE_SCOPES, ApiClient, ApiScope

KEY_RE = re.compile(r"^scrm_([a-z0-9]{8})_([A-Za-z0-9_\-]{20,100})$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
LAST_USED_RESOLUTION_SECONDS = 60


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_client_create(*, actor, name: str, scopes: list[str], branch_code: str | None = None,
                      rate_limit_per_minute: int = 600) -> tuple[ApiClient, str]:
    """Create a client and return it with its key; the key is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError("api_client_name_required", gettext("请填写名称"),
                               [{"field": "name", "message": gettext("必填")}])
    if ApiClient.objects.filter(name=name).exists():
        taken = gettext("名称已被使用")
        raise ApplicationError("api_client_name_taken", taken, [{"field": "name", "message": taken}])
    unknown = sorted(set(scopes) - set(ApiScope.values))
    if unknown:
        message = gettext("未知的权限：%(scopes)s") % {"scopes": ", ".join(unknown)}
        raise ApplicationError("api_client_scope_unknown", message, [{"field": "scopes", "message": message}])
    branch = None
    if branch_code:
        branch = Branch.objects.filter(code=branch_code).first()
        if branch is None:
            raise ApplicationError("api_client_branch_unknown", gettext("营业部代码不存在：%(code)s") % {"code": branch_code},
                                   [{"field": "branch", "message": gettext("营业部代码不存在")}])
    firm_wide = sorted(set(scopes) & FIRM_WIDE_SCOPES)
    if branch is not None and firm_wide:
        message = gettext("营业部密钥不能拥有全公司范围的写权限：%(scopes)s（产品等参考数据由总部密钥维护）") % {
            "scopes": ", ".join(firm_wide)}
        raise ApplicationError("api_client_scope_firm_wide", message, [{"field": "scopes", "message": message}])
    if rate_limit_per_minute < 1:
        raise ApplicationError("api_client_rate_invalid", gettext("每分钟请求上限至少为 1"))
    while True:
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
        if not ApiClient.objects.filter(key_prefix=prefix).exists():
            break
    key = f"scrm_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        name=name, key_prefix=prefix, key_hash=_key_hash(key), branch=branch,
        scopes=[s for s in ApiScope.values if s in set(scopes)], rate_limit_per_minute=rate_limit_per_minute,
        created_by=actor if getattr(actor, "pk", None) else None)
    audit_record(actor=actor, actor_label=None if getattr(actor, "pk", None) else "system",
                 action="api_client.create", target_type="api_client", target_id=str(client.pk),
                 details={"name": name, "scopes": client.scopes, "branch": branch_code or ""})
    return client, key


@transaction.atomic
def api_client_deactivate(*, actor, client: ApiClient) -> ApiClient:
    """Switch a client off; its key stops working at once. Deactivating twice writes nothing."""
    if not client.active:
        return client
    client.active = False
    client.save(update_fields=["active"])
    audit_record(actor=actor, action="api_client.deactivate", target_type="api_client", target_id=str(client.pk),
                 details={"name": client.name})
    return client


def api_client_for_key(*, key: str) -> ApiClient | None:
    """The active client a key belongs to, or None (malformed, unknown, wrong secret, deactivated)."""
    match = KEY_RE.match(key or "")
    if not match:
        return None
    client = ApiClient.objects.select_related("branch").filter(key_prefix=match.group(1)).first()
    if client is None or not hmac.compare_digest(client.key_hash, _key_hash(key)) or not client.active:
        return None
    now = timezone.now()
    if client.last_used_at is None or (now - client.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    return client


def api_client_list() -> list[ApiClient]:
    return list(ApiClient.objects.select_related("branch", "created_by").order_by("-active", "name"))
