"""The A-share trading calendar in the database (sop.TradingDay), seeded from exchange-calendars.

A day without a row is UNKNOWN: nothing here treats it as open or closed. ``next_trading_day``
raises CalendarUnknown past the last known day, so a journey waiting for "the next trading day"
holds (and says why) instead of firing on a holiday. The library's current release knows sessions
only up to 2026-12-31; operators extend the calendar by hand (or with a newer release) and are
warned when fewer than MIN_FUTURE_TRADING_DAYS are known.
"""

import logging
from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from sop.models import TradingDay

logger = logging.getLogger(__name__)

MIN_FUTURE_TRADING_DAYS = 60
EXCHANGE = "XSHG"


class CalendarUnknown(ApplicationError):
    def __init__(self, day: date):
        super().__init__("calendar_unknown", f"交易日历未覆盖 {day.isoformat()}，请在交易日历中补充后再执行")
        self.day = day


def calendar_seed(*, start: date | None = None) -> int:
    """Write the library's sessions (open days) and the weekdays/weekends between them as closed.

    Days an operator edited (source manual) are left alone. Returns the number of rows written."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar(EXCHANGE)
    first = max(start or calendar.first_session.date(), calendar.first_session.date())
    last = calendar.last_session.date()
    sessions = {d.date() for d in calendar.sessions_in_range(first.isoformat(), last.isoformat())}
    manual = set(TradingDay.objects.filter(source=TradingDay.Source.MANUAL, day__gte=first, day__lte=last)
                 .values_list("day", flat=True))
    rows = []
    day = first
    while day <= last:
        if day not in manual:
            rows.append(TradingDay(day=day, is_open=day in sessions, source=TradingDay.Source.LIBRARY))
        day += timedelta(days=1)
    with transaction.atomic():
        TradingDay.objects.bulk_create(rows, batch_size=2000, update_conflicts=True, unique_fields=["day"],
                                       update_fields=["is_open", "source"])
    return len(rows)


def trading_day_set(*, actor, day: date, is_open: bool, note: str = "") -> TradingDay:
    """An operator's correction or extension of the calendar (audited)."""
    from core.services import audit_record

    with transaction.atomic():
        row, _ = TradingDay.objects.update_or_create(
            day=day, defaults={"is_open": is_open, "source": TradingDay.Source.MANUAL, "note": note,
                               "updated_by": actor if getattr(actor, "pk", None) else None,
                               "updated_at": timezone.now()})
        audit_record(actor=actor, action="sop.calendar_set", target_type="trading_day", target_id=day.isoformat(),
                     details={"is_open": is_open, "note": note})
    return row


def is_trading_day(day: date) -> bool:
    row = TradingDay.objects.filter(day=day).values_list("is_open", flat=True).first()
    if row is None:
        raise CalendarUnknown(day)
    return row


def next_trading_day(after: date) -> date:
    """The first open day strictly after ``after``; CalendarUnknown when the calendar runs out first."""
    days = list(TradingDay.objects.filter(day__gt=after).order_by("day").values_list("day", "is_open")[:40])
    expected = after + timedelta(days=1)
    for day, is_open in days:
        if day != expected:  # a hole in the calendar: unknown, not closed
            raise CalendarUnknown(expected)
        if is_open:
            return day
        expected = day + timedelta(days=1)
    raise CalendarUnknown(expected)


def calendar_status(today: date | None = None) -> dict:
    """Known future trading days and the last known day; ``warning`` when fewer than the minimum."""
    today = today or timezone.localdate()
    future_open = TradingDay.objects.filter(day__gt=today, is_open=True).count()
    last = TradingDay.objects.order_by("-day").values_list("day", flat=True).first()
    warning = future_open < MIN_FUTURE_TRADING_DAYS
    return {"future_trading_days": future_open, "last_known_day": last, "warning": warning,
            "minimum": MIN_FUTURE_TRADING_DAYS}


def calendar_check(today: date | None = None) -> dict:
    """Log a warning when the calendar is about to run out (daily beat task and the dashboard)."""
    status = calendar_status(today)
    if status["warning"]:
        logger.warning("trading calendar: only %s future trading days known (last known day %s); extend it",
                       status["future_trading_days"], status["last_known_day"],
                       extra={"event": "sop.calendar_short", **{k: str(v) for k, v in status.items()}})
    return status


def calendar_reseed(*, actor) -> int:
    """Re-seed from the installed exchange-calendars release (manual days kept), audited."""
    from core.services import audit_record

    with transaction.atomic():
        written = calendar_seed(start=date(2024, 1, 1))
        audit_record(actor=actor, action="sop.calendar_seeded", target_type="trading_day", target_id="XSHG",
                     details={"rows": written})
    return written


def calendar_month(year: int, month: int) -> list[list[dict]]:
    """Weeks (Monday first) of one month: ``{"day", "in_month", "row"}`` where ``row`` is the
    TradingDay or None (unknown)."""
    import calendar as pycalendar

    weeks = pycalendar.Calendar(firstweekday=0).monthdatescalendar(year, month)
    rows = {r.day: r for r in TradingDay.objects.filter(day__gte=weeks[0][0], day__lte=weeks[-1][-1])
            .select_related("updated_by")}
    return [[{"day": d, "in_month": d.month == month, "row": rows.get(d)} for d in week] for week in weeks]
