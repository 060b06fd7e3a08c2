"""Demo data for community groups: run after the demo's WeCom sync has created the group chats.

``seed_groups_demo()`` gives each synced group a purpose (from its name: 股友/基金/VIP/新客), an
audience segment per purpose (firm-wide segments, rebuilt here so their membership exists), and
30 days of GroupDailyStat history ending at today's live size, so the health chart has a curve.
Idempotent: segments are found by name, purposes set only where still "other", history rewritten.
"""

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from groups import selectors
from groups.models import GroupChat, GroupDailyStat, Purpose

# purpose → (keyword in the group's name, audience segment name, rule)
_WECOM = {"type": "attribute", "field": "is_wecom_contact", "op": "is_true"}
AUDIENCES = {
    Purpose.STOCK_FRIENDS: ("股友", "社群目标·积极型股友", {"op": "and", "rules": [
        _WECOM, {"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}),
    Purpose.FUND: ("基金", "社群目标·基金客户", {"op": "and", "rules": [
        _WECOM, {"type": "trades", "measure": "count", "op": "gte", "value": 1, "within_days": 365,
                 "product_type": "fund"}]}),
    Purpose.VIP: ("VIP", "社群目标·VIP 高价值客户", {"op": "and", "rules": [
        _WECOM, {"op": "or", "rules": [
            {"type": "tier", "op": "in", "value": ["important_value", "important_development"]},
            {"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]}]}),
    Purpose.NEW_CLIENT: ("新客", "社群目标·90 天内新开户", {"op": "and", "rules": [
        _WECOM, {"type": "attribute", "field": "opened_days_ago", "op": "lte", "value": 90}]}),
}
HISTORY_DAYS = 30


def _purpose_for(name: str) -> str | None:
    for purpose, (keyword, _segment, _rule) in AUDIENCES.items():
        if keyword.lower() in name.lower():
            return purpose
    return None


def _audience_segments() -> dict[str, int]:
    from segments.models import Segment
    from segments.rules import rule_validate
    from segments.services import segment_rebuild

    ids = {}
    for purpose, (_keyword, name, rule) in AUDIENCES.items():
        rule_validate(rule)
        segment, created = Segment.objects.get_or_create(
            name=name, branch=None, defaults={"rule": rule, "description": "社群运营演示：该用途的群应覆盖的客户"})
        if created or segment.rebuilt_at is None:
            segment_rebuild(segment_id=segment.pk, requested_by="demo")
        ids[purpose] = segment.pk
    return ids


def _history(group: GroupChat, rng: random.Random) -> list[GroupDailyStat]:
    """Walk back from today's live numbers: each day some joins and leaves, the size before it follows."""
    today = timezone.localdate()
    members = group.members.filter(left_at__isnull=True).count()
    mix = selectors.live_tier_mix(group)
    clients = sum(mix.values())
    share = clients / members if members else 0
    rows = []
    for back in range(1, HISTORY_DAYS + 1):
        day = today - timedelta(days=back)
        joins = rng.choice([0, 0, 1, 1, 2, 3, 5]) if members > 3 else 0
        leaves = min(rng.choice([0, 0, 0, 1, 1, 2]), max(members - 1, 0))
        day_clients = round(members * share)
        tiers = {code: round(n * day_clients / clients) for code, n in mix.items()} if clients else {}
        rows.append(GroupDailyStat(group=group, day=day, members=members, clients=day_clients, joins=joins,
                                   leaves=leaves, tiers=tiers))
        members = max(members - joins + leaves, 1)  # the size at the end of the day before
    return rows


@transaction.atomic
def seed_groups_demo(seed: int = 2026) -> dict:
    """Purposes, audiences and 30 days of history for the synced groups. Returns counts."""
    segments = _audience_segments()
    rng = random.Random(seed)
    groups = list(GroupChat.objects.filter(status=GroupChat.Status.ACTIVE).order_by("pk"))
    purposed = 0
    rows = []
    for group in groups:
        purpose = _purpose_for(group.name)
        changed = []
        if purpose and group.purpose == Purpose.OTHER:
            group.purpose = purpose
            changed.append("purpose")
            purposed += 1
        if group.audience_id is None and group.purpose in segments:
            group.audience_id = segments[group.purpose]
            changed.append("audience")
        if changed:
            group.save(update_fields=changed)
        rows += _history(group, rng)
    for i in range(0, len(rows), 1000):
        GroupDailyStat.objects.bulk_create(rows[i:i + 1000], update_conflicts=True, unique_fields=["group", "day"],
                                           update_fields=["members", "clients", "joins", "leaves", "tiers"])
    return {"groups": len(groups), "purposes_set": purposed, "segments": len(segments), "daily_stats": len(rows)}
