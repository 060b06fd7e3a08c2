"""Delivery reports from the provider sandbox (over HTTP) move touches to 已送达 / 失败, and the journey's
per-step results count delivered and replied touches."""

from datetime import timedelta

import pytest
import requests

from customers.models import Customer, Touch
from sop.delivery import delivery_reports_pull
from sop.engine import claim_due, enroll_queryset, execute_batch
from sop.selectors import journey_funnel

pytestmark = pytest.mark.django_db

from sop.tests.test_engine import NOON  # noqa: E402


def _run_sms_journey(sop_kit, customers):
    journey = sop_kit["publish"]([{"id": "hello", "type": "sms", "template": sop_kit["sms"].template_id}])
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                    trigger_key="manual:dlr", now=NOON)
    for batch in claim_due(now=NOON):
        execute_batch(batch, now=NOON)
    return journey


def test_reports_mark_touches_delivered_or_failed_once(provider, sop_kit, client_of, operator):
    reached, unreachable = client_of(1), client_of(2)
    requests.post(f"{provider.url}/admin/unreachable", json={"to": ["13900000002"]}, timeout=5)
    journey = _run_sms_journey(sop_kit, [reached, unreachable])
    assert set(Touch.objects.values_list("status", flat=True)) == {"sent"}

    result = delivery_reports_pull()
    assert result["sms"] == {"delivered": 1, "undelivered": 1, "reports": 2}
    assert Touch.objects.get(customer=reached).status == "delivered"
    assert Touch.objects.get(customer=unreachable).status == "failed"
    assert delivery_reports_pull()["sms"]["reports"] == 0  # the cursor moved on: nothing is read twice

    [hello] = journey_funnel(user=operator, version=journey.live_version)
    assert (hello["entered"], hello["sent"], hello["delivered"], hello["replied"]) == (2, 1, 1, 0)


def test_a_reply_within_48_hours_counts_as_replied(provider, sop_kit, client_of, operator):
    replying, late, bookkeeping = client_of(1), client_of(2), client_of(3)
    journey = _run_sms_journey(sop_kit, [replying, late, bookkeeping])
    Touch.objects.update(occurred_at=NOON)
    Touch.objects.create(customer=replying, channel="wecom", direction="in", content="好的，谢谢",
                         occurred_at=NOON + timedelta(hours=3))
    Touch.objects.create(customer=late, channel="wecom", direction="in", content="在吗",
                         occurred_at=NOON + timedelta(hours=60))
    Touch.objects.create(customer=bookkeeping, channel="wecom", direction="in", source="wecom_add",
                         occurred_at=NOON + timedelta(hours=1))

    [hello] = journey_funnel(user=operator, version=journey.live_version)
    assert hello["replied"] == 1


def test_an_unconfigured_provider_is_reported_not_raised(settings, db):
    settings.MESSAGING_BASE_URL = ""
    result = delivery_reports_pull()
    assert "MESSAGING_BASE_URL" in result["sms"]["error"]
