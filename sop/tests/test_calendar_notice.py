"""The trading calendar past the library's data: an operator imports the exchange's holiday notice for a
year (page or ``manage.py calendar_import``), sees a preview first, and a journey waiting for the next
trading day after 2026-12-31 goes on the right day; a hole still holds; the demo lends itself weekdays
without counting them as known; operators and admins see a banner while the calendar runs short."""

from datetime import date, datetime
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers.models import Customer
from sop.calendar import (
    CalendarUnknown,
    calendar_demo_extend,
    calendar_notice_apply,
    calendar_notice_parse,
    calendar_status,
    next_trading_day,
    trading_day_set,
)
from sop.engine import enroll_queryset
from sop.models import StepRun, TradingDay
from sop.tests.test_engine import drain

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parent / "data" / "sample_2027_holidays.txt"
# 2027 has 261 weekdays (it starts on a Friday); the sample closes 18 of them
SAMPLE_WEEKDAY_CLOSURES = ["2027-01-01", "2027-02-05", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11",
                           "2027-02-12", "2027-04-05", "2027-05-03", "2027-05-04", "2027-05-05", "2027-06-09",
                           "2027-09-15", "2027-10-01", "2027-10-04", "2027-10-05", "2027-10-06", "2027-10-07"]
NEW_YEARS_EVE = timezone.make_aware(datetime(2026, 12, 31, 10, 0))


def _shanghai(*args):
    return timezone.make_aware(datetime(*args))


def test_the_sample_notice_reads_ranges_single_days_and_the_exchanges_own_wording():
    notice = calendar_notice_parse(SAMPLE.read_text(encoding="utf-8"), year=2027)
    assert notice.errors == []
    assert [d.isoformat() for d, _w, _n in notice.holidays] == SAMPLE_WEEKDAY_CLOSURES
    assert notice.open_days == 261 - 18
    names = {d.isoformat(): name for d, _w, name in notice.holidays}
    assert names["2027-02-08"] == "春节" and names["2027-10-04"] == "国庆节" and names["2027-01-01"] == "元旦"
    # the weekends inside the closures are named as weekends: they stay closed whatever the notice says
    assert {d.isoformat() for d, _w, _n in notice.weekends_named} >= {"2027-02-06", "2027-02-07", "2027-05-01"}
    assert notice.days[date(2027, 2, 15)] == (True, "")  # "起照常开市" is not read as a closure
    assert notice.days[date(2027, 1, 2)][0] is False  # a Saturday


@pytest.mark.parametrize("text, error", [
    ("2027-02-30 春节", "第 1 行：2027-02-30 不是有效日期"),
    ("2027-01-01 元旦\n2026-12-31 跨年", "第 2 行：2026-12-31 不在 2027 年内"),
    ("# a comment\n春节放假安排另行通知", "第 2 行：没有找到日期"),
    ("2027-02-12~2027-02-05 春节", "第 1 行：结束日期 2027-02-05 早于开始日期 2027-02-12"),
    ("# only comments\n\n", "没有读到任何休市日期"),
])
def test_a_notice_with_errors_names_the_line_and_writes_nothing(operator, text, error):
    before = list(TradingDay.objects.order_by("day").values_list("day", "is_open", "source"))
    notice = calendar_notice_parse(text, year=2027)
    assert any(error in e for e in notice.errors), notice.errors
    with pytest.raises(ApplicationError) as exc:
        calendar_notice_apply(actor=operator, year=2027, text=text)
    assert exc.value.code == "calendar_notice_invalid"
    assert list(TradingDay.objects.order_by("day").values_list("day", "is_open", "source")) == before
    assert not AuditLog.objects.filter(action="sop.calendar_imported").exists()


def test_the_preview_shows_what_changes_and_which_manual_days_the_notice_replaces(operator):
    trading_day_set(actor=operator, day=date(2027, 1, 4), is_open=False, note="临时休市（演练）")
    notice = calendar_notice_parse(SAMPLE.read_text(encoding="utf-8"), year=2027)
    assert notice.unknown_before == 364  # the library stops at 2026-12-31; one day was set by hand
    assert notice.changes == [{"day": date(2027, 1, 4), "before": False, "after": True, "source": "manual"}]
    assert notice.manual_replaced == 1


def test_a_journey_waiting_for_the_next_trading_day_after_new_years_eve_proceeds_on_the_right_day(
        operator, sop_kit, client_of):
    journey = sop_kit["publish"]([
        {"id": "wait", "type": "wait", "next_trading_day": True, "at": "09:30", "next": "call"},
        {"id": "call", "type": "task", "title": "开年回访", "due_hours": 4},
    ])
    customer = client_of(1)
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=customer.pk), trigger_key="k",
                    now=NEW_YEARS_EVE)
    drain(NEW_YEARS_EVE)
    wait = StepRun.objects.get(step_id="wait")
    assert (wait.status, wait.outcome) == ("due", "held_calendar")  # nothing known after 2026-12-31: it holds
    assert "2027-01-01" in wait.detail["held"]

    call_command("calendar_import", str(SAMPLE), "--year", "2027", "--actor", operator.username)
    assert next_trading_day(date(2026, 12, 31)) == date(2027, 1, 4)  # 元旦 Friday, then the weekend
    drain(wait.due_at)
    wait.refresh_from_db()
    call = StepRun.objects.get(step_id="call")
    assert wait.status == "done" and call.due_at == _shanghai(2027, 1, 4, 9, 30)
    assert drain(_shanghai(2027, 1, 4, 9, 29)) == 0
    assert drain(_shanghai(2027, 1, 4, 9, 31)) == 1
    audit = AuditLog.objects.get(action="sop.calendar_imported")
    assert audit.actor == operator and audit.details["open_days"] == 243 and "2027-02-08 春节" in audit.details["holidays"]


def test_a_hole_in_an_imported_year_still_holds(operator, sop_kit, client_of):
    calendar_notice_apply(actor=operator, year=2027, text=SAMPLE.read_text(encoding="utf-8"))
    TradingDay.objects.filter(day=date(2027, 2, 15)).delete()
    with pytest.raises(CalendarUnknown):
        next_trading_day(date(2027, 2, 10))  # closed to the 14th, then nothing known for the 15th
    journey = sop_kit["publish"]([{"id": "wait", "type": "wait", "next_trading_day": True, "next": "call"},
                                  {"id": "call", "type": "task", "title": "节后回访", "due_hours": 4}])
    at = _shanghai(2027, 2, 10, 10, 0)
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk=client_of(1).pk), trigger_key="k",
                    now=at)
    drain(at)
    wait = StepRun.objects.get(step_id="wait")
    assert (wait.status, wait.outcome) == ("due", "held_calendar") and "2027-02-15" in wait.detail["held"]


def test_the_command_previews_on_a_dry_run_and_refuses_a_bad_notice(tmp_path, capsys):
    call_command("calendar_import", str(SAMPLE), "--year", "2027", "--dry-run")
    out = capsys.readouterr().out
    assert "243 trading days" in out and "closed 2027-02-08 春节" in out and "nothing written" in out
    assert not TradingDay.objects.filter(day__year=2027).exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("2027-13-01 无此日\n", encoding="utf-8")
    with pytest.raises(CommandError, match="第 1 行"):
        call_command("calendar_import", str(bad), "--year", "2027")
    call_command("calendar_import", str(SAMPLE), "--year", "2027")
    assert TradingDay.objects.filter(day__year=2027, source="notice").count() == 365
    assert AuditLog.objects.get(action="sop.calendar_imported").actor_label == "system"


def test_demo_days_fill_only_unknown_days_and_never_count_as_known():
    today = date(2026, 12, 20)
    before = calendar_status(today)
    written = calendar_demo_extend(first=date(2026, 12, 1), last=date(2027, 1, 31))
    assert written == 31  # December is known from the library; January is not
    assert TradingDay.objects.get(day=date(2027, 1, 1)).is_open  # a weekday, open for the demo (a real holiday!)
    assert not TradingDay.objects.get(day=date(2027, 1, 2)).is_open
    assert TradingDay.objects.filter(day__month=12, day__year=2026, source="demo").count() == 0
    after = calendar_status(today)
    assert after["future_trading_days"] == before["future_trading_days"] and after["warning"]
    assert after["demo_days"] == 31
    assert next_trading_day(date(2026, 12, 31)) == date(2027, 1, 1)  # the demo's journeys run on
    calendar_notice_apply(actor="system", year=2027, text=SAMPLE.read_text(encoding="utf-8"))
    assert not TradingDay.objects.filter(source="demo").exists()  # the notice replaces the demo's days


# --- the page and the banner ---------------------------------------------------------------

def test_operator_previews_then_applies_the_notice_on_the_calendar_page(client, operator):
    client.force_login(operator)
    text = SAMPLE.read_text(encoding="utf-8")
    page = client.post("/sop/calendar/import/", {"year": 2027, "text": text, "action": "preview"}).content.decode()
    assert 'data-testid="notice-open-days">243<' in page and "2027-02-08" in page and "春节" in page
    assert 'data-testid="notice-apply"' in page
    assert not TradingDay.objects.filter(day__year=2027).exists()  # a preview writes nothing
    response = client.post("/sop/calendar/import/", {"year": 2027, "text": text, "action": "apply"})
    assert response.status_code == 302 and response["Location"].endswith("?month=2027-01")
    january = client.get(response["Location"]).content.decode()
    assert 'data-testid="day-2027-01-01" data-state="closed"' in january
    assert 'data-testid="day-2027-01-04" data-state="open"' in january and "已导入 2027 年交易日历" in january


def test_a_bad_notice_on_the_page_shows_each_line_and_keeps_the_text(client, operator):
    client.force_login(operator)
    response = client.post("/sop/calendar/import/", {"year": 2027, "text": "2027-01-01 元旦\n2027-02-30 春节",
                                                     "action": "apply"})
    page = response.content.decode()
    assert response.status_code == 400 and "第 2 行：2027-02-30 不是有效日期" in page and "2027-01-01 元旦" in page
    assert not TradingDay.objects.filter(day__year=2027).exists()


def test_the_page_takes_an_uploaded_notice_file(client, operator):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(operator)
    upload = SimpleUploadedFile("2027.txt", SAMPLE.read_text(encoding="utf-8").encode("gb18030"), "text/plain")
    page = client.post("/sop/calendar/import/", {"year": 2027, "file": upload, "action": "preview"}).content.decode()
    assert 'data-testid="notice-open-days">243<' in page


@time_machine.travel(_shanghai(2026, 12, 7, 10, 0), tick=False)
def test_operators_and_admins_see_the_banner_on_every_page_until_the_next_year_is_imported(
        client, operator, admin_user, advisor):
    client.force_login(operator)
    page = client.get("/customers/").content.decode()
    assert 'data-testid="calendar-banner"' in page and "2026-12-31" in page and "导入 2027 年休市安排" in page
    client.force_login(admin_user)
    assert 'data-testid="calendar-banner"' in client.get("/").content.decode()
    client.force_login(advisor)
    assert 'data-testid="calendar-banner"' not in client.get("/").content.decode()
    calendar_notice_apply(actor=operator, year=2027, text=SAMPLE.read_text(encoding="utf-8"))
    client.force_login(operator)
    assert 'data-testid="calendar-banner"' not in client.get("/customers/").content.decode()


def test_the_warning_starts_when_fewer_than_sixty_trading_days_are_known():
    open_days = list(TradingDay.objects.filter(is_open=True).order_by("-day").values_list("day", flat=True))
    assert (calendar_status(open_days[60])["future_trading_days"], calendar_status(open_days[60])["warning"]) == (60, False)
    assert (calendar_status(open_days[59])["future_trading_days"], calendar_status(open_days[59])["warning"]) == (59, True)
