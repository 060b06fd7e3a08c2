"""Delivery reports (状态报告) from the SMS / app-push provider.

The provider accepting a message makes its touch 已发送; the handset answering makes it 已送达, or 失败 when the
message never arrived. Beat pulls the reports (``sop.delivery_reports``, every minute) a page at a time, with
a cursor per gateway and channel kept in the cache; a lost cursor only re-reads reports, which change nothing
the second time because a touch moves only from 已发送.
"""

import logging

from django.conf import settings
from django.core.cache import cache

from customers.models import Touch
from sop import providers

logger = logging.getLogger(__name__)
CHANNELS = ("sms", "app_push")
NEW_STATUS = {"delivered": Touch.Status.DELIVERED, "undelivered": Touch.Status.FAILED}


def _cursor_key(channel: str) -> str:
    return f"sop:delivery_cursor:{settings.MESSAGING_BASE_URL}:{channel}"  # a cursor belongs to one gateway


def delivery_reports_apply(reports: list[dict]) -> dict:
    """Move the touches of these reports (matched by the step run's idempotency key) from 已发送 on."""
    counts = {}
    for status, touch_status in NEW_STATUS.items():
        keys = [r["idempotency_key"] for r in reports if r.get("status") == status and r.get("idempotency_key")]
        counts[status] = Touch.objects.filter(status=Touch.Status.SENT, step_run__idempotency_key__in=keys).update(
            status=touch_status) if keys else 0
    return counts


def delivery_reports_pull(*, max_pages: int = 50) -> dict:
    """Every channel's new reports → touch statuses. A provider that is not configured or not answering is
    reported and tried again on the next run."""
    result = {}
    for channel in CHANNELS:
        after = cache.get(_cursor_key(channel)) or 0
        totals = {"delivered": 0, "undelivered": 0, "reports": 0}
        try:
            for _ in range(max_pages):
                reports, after_next = providers.delivery_reports(channel, after=after)
                if not reports:
                    break
                for status, n in delivery_reports_apply(reports).items():
                    totals[status] += n
                totals["reports"] += len(reports)
                after = after_next
                cache.set(_cursor_key(channel), after, timeout=None)
        except providers.ProviderUnavailable as exc:
            logger.warning("delivery reports for %s not pulled: %s", channel, exc.message)
            totals["error"] = exc.message
        result[channel] = totals
    return result
