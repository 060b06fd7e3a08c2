"""The A-share trading calendar in the database (sop.TradingDay), seeded from exchange-calendars.

A day without a row is UNKNOWN: nothing here treats it as open or closed. ``next_trading_day``
raises CalendarUnknown past the last known day, so a journey waiting for "the next trading day"
holds (and says why) instead of firing on a holiday. The library's current release knows sessions
only up to 2026-12-31; operators extend it a year at a time by importing the exchange's published
holiday notice (``calendar_notice_parse`` → preview → ``calendar_notice_apply``; the page and
``manage.py calendar_import``), correct single days by hand, and are warned (calendar page, dashboard,
a banner on every page for operators and admins) when fewer than MIN_FUTURE_TRADING_DAYS are known.

Sources: the library, an imported notice, a manual correction, or the demo (``calendar_demo_extend``:
weekdays open, for the demo's replay window only when nothing better is known). Demo days make the
demo run on any date but never count as known for the warning.
"""

import logging
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

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
    """Known future trading days and the last known day; ``warning`` when fewer than the minimum.

    Days the demo generated are not known: they are counted apart (``demo_days``)."""
    today = today or timezone.localdate()
    real = TradingDay.objects.exclude(source=TradingDay.Source.DEMO)
    future_open = real.filter(day__gt=today, is_open=True).count()
    last = real.order_by("-day").values_list("day", flat=True).first()
    warning = future_open < MIN_FUTURE_TRADING_DAYS
    return {"future_trading_days": future_open, "last_known_day": last, "warning": warning,
            "minimum": MIN_FUTURE_TRADING_DAYS, "next_year": (last or today).year + 1,
            "demo_days": TradingDay.objects.filter(day__gt=today, source=TradingDay.Source.DEMO).count()}


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


# --- the exchange's holiday notice for a year --------------------------------------------------

_ISO = r"(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
_MONTH_DAY = r"(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*日"
DATE_RE = re.compile(f"{_ISO}|{_MONTH_DAY}")
RANGE_RE = re.compile(r"[~～至到—–]|--")
NOISE_RE = re.compile(r"[（(][^）)]*[）)]|[：:，,。;；、\s]|休市|闭市|放假")
MAX_NOTICE_CHARS = 20_000
WEEKDAYS = "一二三四五六日"


@dataclass
class Closure:
    start: date
    end: date
    name: str
    line: int


@dataclass
class CalendarNotice:
    """A parsed notice for one year and what applying it would do (``calendar_notice_parse``)."""

    year: int
    closures: list[Closure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    days: dict = field(default_factory=dict)  # date -> (is_open, note)
    holidays: list[tuple] = field(default_factory=list)  # weekdays the notice closes: (day, weekday, name)
    weekends_named: list[tuple] = field(default_factory=list)  # weekend days it names (make-up days): closed anyway
    changes: list[dict] = field(default_factory=list)  # days whose state changes: {day, before, after, source}
    unknown_before: int = 0
    manual_replaced: int = 0

    @property
    def open_days(self) -> int:
        return sum(1 for is_open, _note in self.days.values() if is_open)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.closures)


def _line_dates(segment: str, year: int, number: int, errors: list[str]) -> list[tuple[date, int, int]]:
    found = []
    for match in DATE_RE.finditer(segment):
        y = int(match["y"]) if match["y"] else year
        m, d = int(match["m"] or match["m2"]), int(match["d"] or match["d2"])
        try:
            day = date(y, m, d)
        except ValueError:
            errors.append(_("第 %(n)s 行：%(text)s 不是有效日期") % {"n": number, "text": match.group(0).strip()})
            continue
        if day.year != year:
            errors.append(_("第 %(n)s 行：%(day)s 不在 %(year)s 年内") % {"n": number, "day": day.isoformat(), "year": year})
            continue
        found.append((day, match.start(), match.end()))
    return found


def calendar_notice_parse(text: str, *, year: int, today: date | None = None) -> CalendarNotice:
    """Read a holiday notice: one closure per line, a date or a range with an optional name, e.g.
    ``2027-02-05~2027-02-12 春节`` or the exchange's own wording ``春节：2月5日（星期五）至2月12日（星期五）休市，
    2月15日（星期一）起照常开市`` (what follows 休市 is ignored); ``#`` starts a comment. Every other weekday of
    the year is a trading day, every weekend day closed (A-share markets never open on weekends, make-up
    working days included). Errors name the line; nothing is decided for a notice with errors."""
    notice = CalendarNotice(year=year)
    if not 1990 <= year <= 2200:
        notice.errors.append(_("年份 %(year)s 不在支持范围内") % {"year": year})
        return notice
    if len(text) > MAX_NOTICE_CHARS:
        notice.errors.append(_("内容过长（最多 %(n)s 个字符）") % {"n": MAX_NOTICE_CHARS})
        return notice
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        segment = line.split("休市", 1)[0] if "休市" in line else line
        dates = _line_dates(segment, year, number, notice.errors)
        if not dates:
            if not DATE_RE.search(segment):
                notice.errors.append(_("第 %(n)s 行：没有找到日期（格式如 2027-02-05~2027-02-12 春节）") % {"n": number})
            continue
        name = NOISE_RE.sub("", RANGE_RE.sub("", DATE_RE.sub("", segment)))[:60]
        i = 0
        while i < len(dates):
            start, _s, end_pos = dates[i]
            end = start
            if i + 1 < len(dates) and RANGE_RE.search(segment[end_pos:dates[i + 1][1]]):
                end = dates[i + 1][0]
                i += 1
            if end < start:
                notice.errors.append(_("第 %(n)s 行：结束日期 %(end)s 早于开始日期 %(start)s") % {
                    "n": number, "end": end.isoformat(), "start": start.isoformat()})
            else:
                notice.closures.append(Closure(start=start, end=end, name=name, line=number))
            i += 1
    if not notice.closures and not notice.errors:
        notice.errors.append(_("没有读到任何休市日期"))
    if notice.errors:
        return notice
    _notice_days(notice, today=today)
    return notice


def _notice_days(notice: CalendarNotice, *, today: date | None) -> None:
    closed: dict[date, str] = {}
    for closure in notice.closures:
        day = closure.start
        while day <= closure.end:
            closed.setdefault(day, closure.name)
            day += timedelta(days=1)
    day, last = date(notice.year, 1, 1), date(notice.year, 12, 31)
    while day <= last:
        weekend = day.weekday() >= 5
        notice.days[day] = (not weekend and day not in closed, closed.get(day, ""))
        if day in closed:
            (notice.weekends_named if weekend else notice.holidays).append((day, WEEKDAYS[day.weekday()], closed[day]))
        day += timedelta(days=1)
    current = {row.day: row for row in TradingDay.objects.filter(day__year=notice.year)}
    notice.unknown_before = len(notice.days) - len(current)
    for day, (is_open, _note) in notice.days.items():
        row = current.get(day)
        if row is not None and row.is_open != is_open:
            notice.changes.append({"day": day, "before": row.is_open, "after": is_open, "source": row.source})
            notice.manual_replaced += row.source == TradingDay.Source.MANUAL


def calendar_notice_apply(*, actor, year: int, text: str) -> CalendarNotice:
    """Write a whole year from the notice (every day, manual corrections of that year included: the notice is
    the exchange's word), in one audited transaction. Raises ApplicationError listing what is wrong."""
    from core.services import audit_record

    notice = calendar_notice_parse(text, year=year)
    if not notice.ok:
        raise ApplicationError("calendar_notice_invalid", _("休市安排有误，未导入：") + "；".join(notice.errors),
                               details={"errors": notice.errors})
    actor_row = actor if getattr(actor, "pk", None) else None
    rows = [TradingDay(day=day, is_open=is_open, source=TradingDay.Source.NOTICE, note=note[:100], updated_by=actor_row,
                       updated_at=timezone.now()) for day, (is_open, note) in notice.days.items()]
    with transaction.atomic():
        TradingDay.objects.bulk_create(rows, batch_size=500, update_conflicts=True, unique_fields=["day"],
                                       update_fields=["is_open", "source", "note", "updated_by", "updated_at"])
        audit_record(actor=actor, action="sop.calendar_imported", target_type="trading_day", target_id=str(year),
                     details={"year": year, "open_days": notice.open_days,
                              "holidays": [f"{d.isoformat()} {name}" for d, _w, name in notice.holidays],
                              "changed": len(notice.changes), "manual_replaced": notice.manual_replaced})
    return notice


def calendar_demo_extend(*, first: date, last: date) -> int:
    """Fill the UNKNOWN days of ``first``…``last`` with weekdays open and weekends closed, marked as the demo's,
    so the demo's replay runs on any date. Known days are never touched. Returns the days written."""
    known = set(TradingDay.objects.filter(day__gte=first, day__lte=last).values_list("day", flat=True))
    rows, day = [], first
    while day <= last:
        if day not in known:
            rows.append(TradingDay(day=day, is_open=day.weekday() < 5, source=TradingDay.Source.DEMO))
        day += timedelta(days=1)
    TradingDay.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
