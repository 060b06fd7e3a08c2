"""Seed the XSHG trading calendar from exchange-calendars (2024 onwards), compliance's default list
of forbidden promises and the guard policy row."""

from datetime import date, timedelta

from django.db import migrations

FORBIDDEN = [
    ("保本", "不得承诺保本"), ("稳赚", "不得承诺收益"), ("无风险", "不得宣称无风险"), ("零风险", "不得宣称零风险"),
    ("保证收益", "不得保证收益"), ("保收益", "不得保证收益"), ("稳赚不赔", "不得承诺收益"), ("刚性兑付", "不得承诺刚兑"),
    ("包赚", "不得承诺收益"), ("只涨不跌", "不得误导"), ("guaranteed return", "no guaranteed returns"),
    ("risk-free", "no risk-free claims"),
]


def seed(apps, schema_editor):
    import exchange_calendars

    TradingDay = apps.get_model("sop", "TradingDay")
    calendar = exchange_calendars.get_calendar("XSHG")
    first, last = date(2024, 1, 1), calendar.last_session.date()
    sessions = {d.date() for d in calendar.sessions_in_range(first.isoformat(), last.isoformat())}
    rows, day = [], first
    while day <= last:
        rows.append(TradingDay(day=day, is_open=day in sessions, source="exchange_calendars"))
        day += timedelta(days=1)
    TradingDay.objects.bulk_create(rows, ignore_conflicts=True)
    ForbiddenPhrase = apps.get_model("sop", "ForbiddenPhrase")
    ForbiddenPhrase.objects.bulk_create([ForbiddenPhrase(phrase=p, reason=r) for p, r in FORBIDDEN],
                                        ignore_conflicts=True)
    GuardPolicy = apps.get_model("sop", "GuardPolicy")
    GuardPolicy.objects.get_or_create(pk=1, defaults={"caps": {
        "wecom": {"day": 1, "week": 2, "month": 4}, "sms": {"day": 1, "week": 3, "month": 8},
        "app_push": {"day": 2, "week": 7, "month": 20}, "wecom_group": {"day": 3}}})


class Migration(migrations.Migration):
    dependencies = [("sop", "0001_journeys")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
