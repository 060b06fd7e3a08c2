"""Reads behind the /api/v1 views. Every customer query is handed in already scoped by ApiView."""

import base64
import json
from datetime import datetime

from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.errors import ApplicationError
from core.validators import utc_offset_valid
from customers.models import RiskLevel
from customers.selectors import customer_filter
from tagging.models import CustomerTag, CustomerTier, TierDefinition
from tagging.tiers import tier_run_latest_full

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


def _bad_param(name: str, message: str) -> ApplicationError:
    return ApplicationError("invalid", message, [{"field": name, "message": message, "code": "invalid"}])


def cursor_encode(updated_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([updated_at.isoformat(), pk]).encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        # validate: a character outside base64url is refused, not skipped
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        stamp, pk = json.loads(raw)
        parsed = datetime.fromisoformat(stamp)
        if parsed.tzinfo is None or isinstance(pk, bool) or not isinstance(pk, int):
            raise ValueError
        return parsed, pk
    except (ValueError, TypeError, UnicodeDecodeError):
        raise _bad_param("cursor", "cursor 无效，请使用上一页返回的 next") from None


def api_list_params(query) -> dict:
    """Checked query parameters of GET customers/: bad values answer 400, not an empty page."""
    params = {"filters": {}, "updated_since": None, "cursor": None, "page_size": DEFAULT_PAGE_SIZE}
    raw_size = query.get("page_size")
    if raw_size is not None:
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses (that was a 500)
        if not (raw_size.isascii() and raw_size.isdigit()) or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            raise _bad_param("page_size", f"page_size 应为 1–{MAX_PAGE_SIZE} 的整数")
        params["page_size"] = int(raw_size)
    since = query.get("updated_since")
    if since:
        try:  # a well-formed but impossible time (June 31st, an offset of 99 hours) raises: a 400, not a 500
            parsed = parse_datetime(since) or parse_datetime(since.replace(" ", "+"))
        except ValueError:
            parsed = None
        if parsed is None:
            raise _bad_param("updated_since", "updated_since 应为 ISO 8601 时间，如 2025-03-01T00:00:00%2B08:00")
        if parsed.tzinfo is None:
            parsed = timezone.make_aware(parsed)
        if not utc_offset_valid(parsed):  # PostgreSQL cannot even hold ±16:00
            raise _bad_param("updated_since", "updated_since 的时区偏移应在 -14:00 到 +14:00 之间")
        if not 1900 <= parsed.year <= 9000:
            raise _bad_param("updated_since", "updated_since 超出可用的时间范围")
        params["updated_since"] = parsed
    if query.get("cursor"):
        params["cursor"] = cursor_decode(query["cursor"])
    risk = query.get("risk_level")
    if risk:
        if risk.upper() not in RiskLevel.values:
            raise _bad_param("risk_level", "risk_level 应为 C1–C5")
        params["filters"]["risk_level"] = [risk.upper()]
    for name in ("branch", "tier", "tag"):
        if query.get(name):
            params["filters"][name] = query[name] if name != "tag" else [query[name]]
    return params


def tag_codes_for(customer_ids: list[int]) -> dict[int, list[str]]:
    now = timezone.now()
    rows = (CustomerTag.objects.filter(customer_id__in=customer_ids)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .order_by("customer_id", "tag__code").values_list("customer_id", "tag__code"))
    out: dict[int, list[str]] = {}
    for customer_id, code in rows:
        out.setdefault(customer_id, []).append(code)
    return out


def customers_with_body(customers) -> list:
    """Attach tier_code, tag_codes and the values of the active custom fields for the output serializer (three
    queries for a page)."""
    from customers.custom_fields import definitions_active

    customers = list(customers)
    tags = tag_codes_for([c.pk for c in customers])
    active = [d.code for d in definitions_active()] if customers else []
    for c in customers:
        c.tag_codes = tags.get(c.pk, [])
        stored = c.custom_fields or {}
        c.custom_fields_active = {code: stored[code] for code in active if code in stored}
    return customers


def customer_api_page(*, customers, params: dict) -> tuple[list, tuple | None]:
    """One keyset page ordered by (updated_at, id); returns (rows, the (updated_at, id) to continue after)."""
    qs = customer_filter(customers, filters=params["filters"])
    if params["updated_since"] is not None:
        qs = qs.filter(updated_at__gte=params["updated_since"])
    if params["cursor"] is not None:
        stamp, pk = params["cursor"]
        qs = qs.filter(Q(updated_at__gt=stamp) | Q(updated_at=stamp, id__gt=pk))
    size = params["page_size"]
    rows = list(qs.select_related("branch", "advisor").annotate(tier_code=F("tier__code"))
                .order_by("updated_at", "id")[: size + 1])
    more = len(rows) > size
    rows = customers_with_body(rows[:size])
    return rows, ((rows[-1].updated_at, rows[-1].pk) if more else None)


def customer_api_body(*, customers, external_id: str):
    """The customer (already known visible) with tier and tags attached."""
    customer = customers.select_related("branch", "advisor").annotate(tier_code=F("tier__code")).get(
        external_id=external_id)
    return customers_with_body([customer])[0]


def tier_overview_for_client(*, customers) -> dict:
    """The latest full run's parameters with current tier counts among ``customers``."""
    run = tier_run_latest_full()
    definitions = list(TierDefinition.objects.filter(scheme__active=True).order_by("rank", "code"))
    counts = dict(CustomerTier.objects.filter(customer__in=customers).values("code").annotate(n=Count("pk"))
                  .values_list("code", "n"))
    return {
        "as_of": run.as_of if run else None,
        "window_days": run.window_days if run else None,
        "thresholds": {"r": run.threshold_r if run else None, "f": run.threshold_f if run else None,
                       "m": run.threshold_m if run else None},
        "tiers": [{"code": d.code, "label": d.label, "count": counts.get(d.code, 0)} for d in definitions],
    }


def customer_tier_for_api(*, customer) -> dict | None:
    tier = CustomerTier.objects.filter(customer_id=customer.pk).first()
    if tier is None:
        return None
    label = (TierDefinition.objects.filter(scheme__active=True, code=tier.code).values_list("label", flat=True)
             .first() or tier.code)
    return {"code": tier.code, "label": label, "r": tier.r, "f": tier.f, "m": tier.m, "as_of": tier.as_of}
