"""What starts a journey. Event triggers arrive through other areas' hooks (tag changed, tier
changed, WeCom contact added, a segment's bulk action); time triggers are scanned on beat
(funnel stage reached or stalled, birthdays and expiring risk assessments, segment entries, the
trading-day schedule). Each enrollment carries a trigger key, so the same event never enrolls twice.
"""

import logging
from datetime import datetime, time, timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.events import TagChanged, TierChanged, WecomContactAdded, subscribe
from sop.engine import enroll_customer, enroll_queryset
from sop.models import Journey, JourneyVersion

logger = logging.getLogger(__name__)
CHURN_TAG = "churn_risk"


LIVE_TRIGGERS_KEY = "sop:live-triggers"


def live_triggers() -> list[dict]:
    """Every running journey's live version and trigger, cached: event hooks run for every tag or tier
    change of every client, and most of them match no journey. Publishing or changing a journey's
    status forgets the cache (sop.services)."""
    cached = cache.get(LIVE_TRIGGERS_KEY)
    if cached is None:
        cached = [{"version": v.pk, "type": v.trigger_type, "trigger": v.definition["trigger"]}
                  for v in JourneyVersion.objects.filter(journey__status=Journey.Status.LIVE,
                                                         journey__live_version=F("pk"))]
        cache.set(LIVE_TRIGGERS_KEY, cached, 300)
    return cached


def live_triggers_forget() -> None:
    cache.delete(LIVE_TRIGGERS_KEY)
    transaction.on_commit(lambda: cache.delete(LIVE_TRIGGERS_KEY))


def live_versions(trigger_type: str, match=None):
    """The live versions with this trigger (and whose trigger ``match`` accepts); no query when none."""
    ids = [t["version"] for t in live_triggers() if t["type"] == trigger_type and (match is None or match(t["trigger"]))]
    if not ids:
        return []
    return JourneyVersion.objects.filter(pk__in=ids, journey__status=Journey.Status.LIVE).select_related("journey")


# --- event hooks ---------------------------------------------------------------------------

def on_tag_changed(event: TagChanged) -> None:
    """Journeys triggered by a tag (and churn-risk journeys by the churn_risk tag) enroll its new holder."""
    if event.action != "added":
        return
    customer_id, tag_code = event.customer_id, event.tag_code
    now = timezone.now()
    versions = [*live_versions("tag_added", lambda t: t.get("tag") == tag_code),
                *(live_versions("churn_risk") if tag_code == CHURN_TAG else [])]
    for version in versions:
        enroll_customer(journey=version.journey, customer_id=customer_id,
                        trigger_key=f"tag:{tag_code}:{now:%Y%m%d%H%M%S}")


def on_tier_changed(event: TierChanged) -> None:
    """Journeys triggered by a tier change (optionally to given tiers) enroll the run's movers."""
    from customers.models import Customer

    run_id = event.run_id
    for version in live_versions("tier_changed"):
        to = version.definition["trigger"].get("to")
        changes = Q(tier_history__run_id=run_id) & (Q(tier_history__to_code__in=to) if to else Q())
        enroll_queryset(version=version, customers=Customer.objects.filter(changes).distinct(),
                        trigger_key=f"tier_run:{run_id}")


def on_wecom_contact_added(event: WecomContactAdded) -> None:
    """Journeys triggered by a WeCom add (optionally through one contact way) enroll the client."""
    from integrations.wecom.models import ContactWay, ExternalContact

    versions = live_versions("wecom_contact_added")
    if not versions:
        return
    contact = ExternalContact.objects.get(pk=event.contact_id)
    contact_way = ContactWay.objects.filter(pk=event.contact_way_id).first() if event.contact_way_id else None
    for version in versions:
        wanted = version.definition["trigger"].get("contact_way")
        if wanted and (contact_way is None or str(wanted) not in (str(contact_way.pk), contact_way.state)):
            continue
        enroll_customer(journey=version.journey, customer_id=event.customer_id,
                        trigger_key=f"wecom_add:{contact.external_userid}")


def _live_journey(params: dict) -> Journey:
    from core.errors import ApplicationError

    raw = str((params or {}).get("journey_id", ""))
    journey = Journey.objects.filter(pk=int(raw), status=Journey.Status.LIVE, live_version__isnull=False).first() \
        if raw.isdigit() else None
    if journey is None:
        raise ApplicationError("journey_not_live", "请选择运行中的旅程",
                               [{"field": "params.journey_id", "message": "请选择运行中的旅程"}])
    return journey


def segment_action_enroll_validate(params: dict) -> dict:
    return {"journey_id": _live_journey(params).pk}


def on_segment_action(*, action, customers, actor) -> dict:
    """segments' bulk action "sop_enroll" (params {"journey_id"}): the members enter the journey."""
    journey = _live_journey(action.params)
    entered = enroll_queryset(version=journey.live_version, customers=customers, trigger_key=f"segment_action:{action.pk}")
    return {"journey": journey.name, "entered": entered, "affected": entered}


# --- time triggers (beat) ------------------------------------------------------------------

def triggers_scan(now: datetime | None = None) -> dict:
    from customers.models import Customer
    from segments.models import SegmentMemberChange

    now = now or timezone.now()
    today = timezone.localdate(now)
    entered = {}
    for version in live_versions("segment_entered"):
        trigger = version.definition["trigger"]
        changes = SegmentMemberChange.objects.filter(segment_id=trigger["segment"], action="joined",
                                                     at__gte=now - timedelta(days=1))
        for rebuild_id in set(changes.values_list("rebuild_id", flat=True)):
            entered[version.pk] = entered.get(version.pk, 0) + enroll_queryset(
                version=version, trigger_key=f"segment:{rebuild_id}",
                customers=Customer.objects.filter(pk__in=changes.filter(rebuild_id=rebuild_id).values("customer_id")))
    for kind in ("funnel_stage", "funnel_stalled", "account_opened"):
        for version in live_versions(kind):
            trigger = version.definition["trigger"]
            # each scan looks at a one-day window of changes, not at every client ever at that stage
            if kind == "account_opened":
                qs, key = Customer.objects.filter(opened_at__gte=today - timedelta(days=7)), "opened"
            else:
                since = now - timedelta(hours=trigger.get("hours", 0))
                qs = Customer.objects.filter(funnel_stage=trigger["stage"], updated_at__lte=since,
                                             updated_at__gt=since - timedelta(days=1))
                key = f"{kind}:{trigger['stage']}"
            entered[version.pk] = enroll_queryset(version=version, customers=qs, trigger_key=key, now=now)
    for version in live_versions("date_field"):
        trigger = version.definition["trigger"]
        target = today + timedelta(days=trigger["days_before"])
        if trigger["field"] == "birthday":
            qs = Customer.objects.filter(birth_date__month=target.month, birth_date__day=target.day)
            key = f"birthday:{target.year}"
        else:
            from customers.selectors import risk_expiry_cutoff

            qs = Customer.objects.filter(risk_assessed_at=risk_expiry_cutoff(target))
            key = f"risk_expiry:{target.isoformat()}"
        entered[version.pk] = enroll_queryset(version=version, customers=qs, trigger_key=key, now=now)
    entered.update(_schedules(now))
    return entered


def _schedules(now) -> dict:
    from customers.models import Customer
    from segments.models import SegmentMember
    from sop.calendar import CalendarUnknown, is_trading_day

    local = timezone.localtime(now)
    done = {}
    for version in live_versions("schedule"):
        trigger = version.definition["trigger"]
        hour, minute = (int(x) for x in trigger["at"].split(":"))
        if local.time() < time(hour, minute):
            continue
        if trigger.get("days", "trading") == "trading":
            try:
                if not is_trading_day(local.date()):
                    continue
            except CalendarUnknown as exc:
                logger.warning("schedule of journey %s skipped: %s", version.journey_id, exc.message)
                continue
        members = SegmentMember.objects.filter(segment_id=trigger["segment"]).values("customer_id")
        done[version.pk] = enroll_queryset(version=version, customers=Customer.objects.filter(pk__in=members),
                                           trigger_key=f"schedule:{local.date().isoformat()}", now=now)
    return done


def subscriptions() -> None:
    """Live journeys follow tags, tiers and WeCom adds; segments' bulk action "加入旅程" enrolls."""
    from segments.actions import register_action_handler

    subscribe(TagChanged, on_tag_changed)
    subscribe(TierChanged, on_tier_changed)
    subscribe(WecomContactAdded, on_wecom_contact_added)
    register_action_handler("sop_enroll", on_segment_action, validate=segment_action_enroll_validate)
