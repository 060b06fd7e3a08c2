"""Journey goals: did the client do what the journey was for, and did the journey make a difference?

``goals_measure`` (beat ``sop.goals_measure``, every 5 minutes) sets ``Enrollment.goal_met_at`` to the
moment the goal was first met AFTER the client entered and within the goal's ``within_days`` — for
treated and hold-out enrollments alike, so the two can be compared. One UPDATE per goal type, whatever
the number of enrollments; a goal met before entry never counts, and a recorded time is never changed.

What counts as "met" (the data we hold, see README):

* ``first_trade``   the first trade after entry (customers.Trade.traded_at);
* ``margin_opened`` the first trade of a margin product (customers.Product.type = "margin") after entry —
  there is no margin-account field, a margin trade is the evidence that the account is open;
* ``funded``        the funnel stage is "funded", the stage changed after entry (Customer.updated_at, which
  moves only on a real change) and the client had no trade up to entry (who traded was funded already);
* ``account_opened`` the funnel stage is "opened"/"funded", ``opened_at`` is on or after the entry day and
  the change came after entry; the time is the earliest we can prove: min(updated_at, end of the opening day);
* ``tag``           the goal's tag was added after entry (tagging.CustomerTagHistory).

``goal_summary`` compares treatment with hold-out (rates and uplift) and the A/B variants, in two queries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sop.definition import GOALS

# a goal is still looked for this many days after its window closed (measurement paused, late data)
GRACE_DAYS = 7

_UPPER = "LEAST(en.entered_at + g.days * interval '1 day', %(now)s)"

# per goal type: the earliest moment the goal was met for enrollment ``en`` of version ``g`` (or NULL)
HIT_SQL = {
    "first_trade": f"""(SELECT min(t.traded_at) FROM customers_trade t
        WHERE t.customer_id = en.customer_id AND t.traded_at > en.entered_at AND t.traded_at <= {_UPPER})""",
    "margin_opened": f"""(SELECT min(t.traded_at) FROM customers_trade t
        JOIN customers_product p ON p.id = t.product_id AND p.type = 'margin'
        WHERE t.customer_id = en.customer_id AND t.traded_at > en.entered_at AND t.traded_at <= {_UPPER})""",
    "funded": f"""(SELECT c.updated_at FROM customers_customer c
        WHERE c.id = en.customer_id AND c.funnel_stage = 'funded'
          AND c.updated_at > en.entered_at AND c.updated_at <= {_UPPER}
          AND NOT EXISTS (SELECT 1 FROM customers_trade t WHERE t.customer_id = c.id AND t.traded_at <= en.entered_at))""",
    "account_opened": f"""(SELECT o.at FROM customers_customer c
        CROSS JOIN LATERAL (SELECT LEAST(c.updated_at, ((c.opened_at + 1)::timestamp AT TIME ZONE %(tz)s)) AS at) o
        WHERE c.id = en.customer_id AND c.funnel_stage IN ('opened', 'funded')
          AND c.opened_at >= (en.entered_at AT TIME ZONE %(tz)s)::date
          AND c.updated_at > en.entered_at AND o.at <= {_UPPER})""",
    "tag": f"""(SELECT min(h.at) FROM tagging_customertaghistory h
        JOIN tagging_tag tg ON tg.id = h.tag_id AND tg.code = g.tag
        WHERE h.customer_id = en.customer_id AND h.action = 'added'
          AND h.at > en.entered_at AND h.at <= {_UPPER})""",
}

MEASURE_SQL = """
WITH g AS (
    SELECT v.id, COALESCE((v.definition->'goal'->>'within_days')::int, 30) AS days, v.definition->'goal'->>'tag' AS tag
    FROM sop_journeyversion v
    WHERE v.definition->'goal'->>'type' = %(type)s
),
hits AS (
    SELECT en.id, {hit} AS at
    FROM sop_enrollment en JOIN g ON g.id = en.version_id
    WHERE en.goal_met_at IS NULL AND en.entered_at <= %(now)s
      AND en.entered_at > %(now)s - (g.days + %(grace)s) * interval '1 day'
)
UPDATE sop_enrollment e SET goal_met_at = hits.at
FROM hits
WHERE e.id = hits.id AND hits.at IS NOT NULL AND e.goal_met_at IS NULL
"""


def goals_measure(now=None) -> dict[str, int]:
    """Record newly met goals up to ``now``; returns how many enrollments met their goal, per goal type."""
    now = now or timezone.now()
    met = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for goal_type, hit in HIT_SQL.items():
            cursor.execute(MEASURE_SQL.format(hit=hit),
                           {"type": goal_type, "now": now, "grace": GRACE_DAYS, "tz": settings.TIME_ZONE})
            met[goal_type] = cursor.rowcount
    return met


# --- results ------------------------------------------------------------------------------------

SUMMARY_SQL = """
SELECT e.status = 'holdout' AS holdout, e.variant, count(*), count(e.goal_met_at),
       count(*) FILTER (WHERE e.goal_met_at IS NULL AND e.entered_at
                        + COALESCE((v.definition->'goal'->>'within_days')::int, 30) * interval '1 day' > %(now)s)
FROM sop_enrollment e JOIN sop_journeyversion v ON v.id = e.version_id
WHERE e.journey_id = %(journey)s AND (%(version)s::bigint IS NULL OR e.version_id = %(version)s::bigint)
GROUP BY 1, 2
"""


def _group(enrolled: int = 0, met: int = 0, pending: int = 0) -> dict:
    return {"enrolled": enrolled, "met": met, "pending": pending, "rate": met / enrolled if enrolled else None}


def goal_summary(journey, version=None, now=None) -> dict:
    """Treatment vs hold-out and per A/B variant for ``journey`` (one ``version`` or all of them).

    ``{"goal": {"type", "label", "within_days"} | None,
       "treatment": {"enrolled", "met", "pending", "rate"}, "holdout": {...},
       "uplift": rate(treatment) − rate(hold-out) | None, "uplift_relative": uplift / rate(hold-out) | None,
       "variants": {"A": {...}, "B": {...}}}``

    ``rate`` is met / enrolled (None when nobody entered); ``pending`` counts enrollments whose window is
    still open and whose goal is not met yet, so early rates read as "so far". Hold-out enrollments take
    no A/B branch; the variants are treated clients only.
    """
    now = now or timezone.now()
    shown = version or journey.live_version or journey.versions.order_by("-number").first()
    goal = (shown.definition.get("goal") if shown else None) or None
    with connection.cursor() as cursor:
        cursor.execute(SUMMARY_SQL, {"journey": journey.pk, "version": version.pk if version else None, "now": now})
        rows = cursor.fetchall()
    counts = {"treatment": [0, 0, 0], "holdout": [0, 0, 0]}
    variants: dict[str, list[int]] = {}
    for holdout, variant, enrolled, met, pending in rows:
        for target in (counts["holdout" if holdout else "treatment"],
                       variants.setdefault(variant, [0, 0, 0]) if variant and not holdout else None):
            if target is not None:
                target[0] += enrolled
                target[1] += met
                target[2] += pending
    treatment, holdout = _group(*counts["treatment"]), _group(*counts["holdout"])
    uplift = uplift_relative = None
    if treatment["rate"] is not None and holdout["rate"] is not None:
        uplift = treatment["rate"] - holdout["rate"]
        uplift_relative = uplift / holdout["rate"] if holdout["rate"] else None
    return {
        "goal": {"type": goal["type"], "label": str(GOALS.get(goal["type"], goal["type"])),
                 "within_days": goal.get("within_days")} if goal and goal.get("type") != "none" else None,
        "treatment": treatment, "holdout": holdout, "uplift": uplift, "uplift_relative": uplift_relative,
        "variants": {v: _group(*c) for v, c in sorted(variants.items())},
    }


def goal_window_end(enrollment) -> datetime | None:
    """When an enrollment's goal window closes (None without a goal)."""
    goal = enrollment.version.definition.get("goal") or {}
    if not goal or goal.get("type") == "none":
        return None
    return enrollment.entered_at + timedelta(days=int(goal.get("within_days") or 30))
