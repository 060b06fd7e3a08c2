"""Blocked touches (list, filters, audited CSV), the guard policy and the trading calendar over HTTP."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from core.models import AuditLog
from customers.models import Customer
from sop.engine import enroll_queryset
from sop.models import GuardPolicy, StepRun, TradingDay
from sop.tests.test_engine import NOON, drain

pytestmark = pytest.mark.django_db


def _wecom_journey(sop_kit, customers, name="新客企微问候"):
    from sop.models import Journey

    journey = sop_kit["publish"]([{"id": "hello", "type": "wecom_message", "template": sop_kit["wecom"].template_id,
                                   "executor": "advisor"}])
    Journey.objects.filter(pk=journey.pk).update(name=name)
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[c.pk for c in customers]),
                    trigger_key=f"t-{name}", now=NOON)
    drain(NOON)
    return journey


@pytest.fixture
def blocked_runs(sop_kit, client_of, other_branch_advisor):
    from customers.tests.factories import CustomerFactory
    from sop.models import Unsubscribe

    no_wecom = client_of(1, name="赵无企微")
    unsubscribed = client_of(2, name="钱已退订", wecom_external_userid="wm_unsub")
    Unsubscribe.objects.create(customer=unsubscribed, channel="wecom")
    shanghai = CustomerFactory(advisor=other_branch_advisor, name="孙上海", risk_level="C3",
                               risk_assessed_at=NOON.date() - timedelta(days=30))  # the engine runs at NOON
    journey = _wecom_journey(sop_kit, [no_wecom, unsubscribed, shanghai])
    return {"journey": journey, "no_wecom": no_wecom, "unsubscribed": unsubscribed, "shanghai": shanghai}


def test_compliance_sees_blocked_touches_with_reasons_in_words_and_masked_clients(client, compliance, blocked_runs):
    client.force_login(compliance)
    html = client.get("/sop/compliance/blocked/").content.decode()
    assert html.count('data-testid="blocked-row"') == 3
    assert "客户不是企业微信好友" in html and "客户已退订该渠道" in html and "新客企微问候" in html
    assert "赵**" in html and "赵无企微" not in html
    html = client.get("/sop/compliance/blocked/", {"reason": "unsubscribed"}).content.decode()
    assert html.count('data-testid="blocked-row"') == 1 and "钱**" in html
    day = timezone.localdate(NOON)
    html = client.get("/sop/compliance/blocked/", {"since": day.isoformat(), "until": day.isoformat()}).content.decode()
    assert html.count('data-testid="blocked-row"') == 3
    html = client.get("/sop/compliance/blocked/", {"since": (day + timedelta(days=1)).isoformat()}).content.decode()
    assert 'data-testid="blocked-empty"' in html


def test_a_template_without_an_approved_version_is_blocked_and_shown_to_compliance(client, compliance, operator,
                                                                                   sop_kit, client_of):
    from sop.models import MessageTemplate
    from sop.templates_lint import template_save

    pending = template_save(actor=operator, template=None, name="待审模板", channel="wecom", body="{name}您好")
    sop_kit["wecom"] = pending  # the journey points at a template compliance has not approved
    _wecom_journey(sop_kit, [client_of(5, wecom_external_userid="wm_5")], name="未批准旅程")
    assert MessageTemplate.objects.get(pk=pending.template_id).approved_version() is None
    client.force_login(compliance)
    html = client.get("/sop/compliance/blocked/", {"reason": "template_not_approved"}).content.decode()
    assert html.count('data-testid="blocked-row"') == 1 and "模板版本未经合规批准" in html and "未批准旅程" in html


def test_a_bad_date_range_is_a_field_error(client, compliance, blocked_runs):
    client.force_login(compliance)
    response = client.get("/sop/compliance/blocked/", {"since": "2026-11-20", "until": "2026-11-01"})
    assert response.status_code == 400 and "结束日期不能早于开始日期" in response.content.decode()


def test_the_blocked_list_is_cut_to_the_viewers_scope(client, blocked_runs, make_staff):
    """The pages are for firm-wide roles; the selector they use still cuts to the viewer's scope."""
    from sop.content_services import blocked_step_runs

    manager = make_staff("mgr_sh", "branch_manager", "SH01")
    names = {r.enrollment.customer.name for r in blocked_step_runs(user=manager, filters={})}
    assert names == {"孙上海"}


def test_the_csv_export_is_audited_and_masks_clients(client, compliance, blocked_runs):
    client.force_login(compliance)
    response = client.get("/sop/compliance/blocked.csv", {"reason": "unsubscribed"})
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    lines = body.strip().splitlines()
    assert len(lines) == 2 and "钱**" in lines[1] and "钱已退订" not in body and "客户已退订该渠道" in lines[1]
    audit = AuditLog.objects.get(action="sop.blocked_export")
    assert audit.actor == compliance and audit.details == {"reason": "unsubscribed"}


@pytest.mark.parametrize("role", ["advisor", "operator", "branch_manager"])
def test_blocked_touches_are_for_compliance_and_admins(client, role, advisor, operator, branch_manager, blocked_runs):
    client.force_login({"advisor": advisor, "operator": operator, "branch_manager": branch_manager}[role])
    assert client.get("/sop/compliance/blocked/").status_code == 404
    assert client.get("/sop/compliance/blocked.csv").status_code == 404
    assert not AuditLog.objects.filter(action="sop.blocked_export").exists()


def test_the_compliance_index_links_and_counts(client, compliance, blocked_runs, operator):
    from sop.templates_lint import template_save

    template_save(actor=operator, template=None, name="x", channel="sms", body="{name}您好")
    client.force_login(compliance)
    html = client.get("/compliance/").content.decode()
    assert 'href="/sop/compliance/approvals/"' in html and 'href="/sop/compliance/blocked/"' in html
    assert 'data-testid="sop-pending-count">1<' in html


# --- guard policy --------------------------------------------------------------------------

def _guard_data(**changes):
    data = {"quiet_start": "21:30", "quiet_end": "08:00", "wecom_day": "1", "wecom_week": "2", "wecom_month": "4",
            "sms_day": "1", "sms_week": "3", "sms_month": "8", "app_push_day": "2", "wecom_group_day": "3"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_compliance_saves_quiet_hours_and_caps_and_the_change_is_audited(client, compliance):
    client.force_login(compliance)
    html = client.get("/sop/compliance/guards/").content.decode()
    assert 'value="21:00"' in html
    response = client.post("/sop/compliance/guards/", _guard_data())
    assert response.status_code == 302
    policy = GuardPolicy.objects.get(pk=1)
    assert str(policy.quiet_start) == "21:30:00"
    assert policy.caps == {"wecom": {"day": 1, "week": 2, "month": 4}, "sms": {"day": 1, "week": 3, "month": 8},
                           "app_push": {"day": 2}, "wecom_group": {"day": 3}}
    audit = AuditLog.objects.get(action="sop.guard_policy_saved")
    assert audit.details["before"]["quiet_start"] == "21:00:00" and audit.details["after"]["quiet_start"] == "21:30:00"


@pytest.mark.parametrize("changes, field", [
    ({"quiet_start": "25:00"}, "quiet_start"),
    ({"sms_day": "0"}, "sms_day"),
    ({"sms_day": "5", "sms_week": "3"}, "sms_month"),
    ({"wecom_week": "abc"}, "wecom_week"),
])
def test_bad_guard_settings_name_the_field_and_change_nothing(client, compliance, changes, field):
    before = GuardPolicy.objects.get(pk=1)
    client.force_login(compliance)
    response = client.post("/sop/compliance/guards/", _guard_data(**changes))
    assert response.status_code == 400 and f'data-testid="field-error-{field}"' in response.content.decode()
    after = GuardPolicy.objects.get(pk=1)
    assert (after.caps, after.quiet_start) == (before.caps, before.quiet_start)
    assert not AuditLog.objects.filter(action="sop.guard_policy_saved").exists()


def test_operators_cannot_change_guards(client, operator):
    client.force_login(operator)
    assert client.post("/sop/compliance/guards/", _guard_data(quiet_start="23:00")).status_code == 404
    assert str(GuardPolicy.objects.get(pk=1).quiet_start) == "21:00:00"


def test_saved_caps_are_what_the_guards_enforce(client, compliance, sop_kit, client_of):
    from customers.models import Touch

    customer = client_of(1, wecom_external_userid="wm_cap")
    Touch.objects.create(customer=customer, channel="wecom", content="x", status="sent", occurred_at=NOON - timedelta(hours=2))
    client.force_login(compliance)
    client.post("/sop/compliance/guards/", _guard_data(wecom_day="2", wecom_week="2", wecom_month="4"))
    _wecom_journey(sop_kit, [customer], name="a")
    assert StepRun.objects.get(enrollment__journey__name="a").outcome == "prepared"  # 1 < day cap 2
    client.post("/sop/compliance/guards/", _guard_data(wecom_day="1"))  # now the earlier touches hit the cap
    _wecom_journey(sop_kit, [customer], name="b")
    assert StepRun.objects.get(enrollment__journey__name="b").block_reason == "frequency_cap"


# --- trading calendar ----------------------------------------------------------------------

def test_the_calendar_warns_when_fewer_than_60_future_trading_days_are_known(client, operator):
    client.force_login(operator)
    TradingDay.objects.filter(day__gt=timezone.localdate() + timedelta(days=20)).delete()
    html = client.get("/sop/calendar/").content.decode()
    assert 'data-testid="calendar-warning"' in html and "少于 60 天" in html


def test_no_warning_when_enough_days_are_known(client, operator):
    start = timezone.localdate()
    TradingDay.objects.bulk_create([TradingDay(day=start + timedelta(days=i), is_open=True) for i in range(1, 120)],
                                   update_conflicts=True, unique_fields=["day"], update_fields=["is_open"])
    client.force_login(operator)
    html = client.get("/sop/calendar/").content.decode()
    assert 'data-testid="calendar-warning"' not in html and 'data-testid="calendar-ok"' in html


def test_the_month_view_shows_open_closed_and_unknown_days(client, operator):
    TradingDay.objects.filter(day=date(2026, 10, 9)).delete()
    client.force_login(operator)
    html = client.get("/sop/calendar/", {"month": "2026-10"}).content.decode()
    assert 'data-testid="day-2026-10-01" data-state="closed"' in html  # National Day
    assert 'data-testid="day-2026-10-08" data-state="open"' in html
    assert 'data-testid="day-2026-10-09" data-state="unknown"' in html


def test_an_operator_sets_a_day_with_a_note_audited(client, operator):
    client.force_login(operator)
    response = client.post("/sop/calendar/day/", {"day": "2027-01-04", "is_open": "1", "note": "交易所 2027 安排"})
    assert response.status_code == 302 and response["Location"].endswith("?month=2027-01")
    row = TradingDay.objects.get(day=date(2027, 1, 4))
    assert (row.is_open, row.source, row.note, row.updated_by) == (True, "manual", "交易所 2027 安排", operator)
    assert AuditLog.objects.filter(action="sop.calendar_set", target_id="2027-01-04").exists()
    html = client.get(response["Location"]).content.decode()
    assert 'data-testid="day-2027-01-04" data-state="open"' in html


@pytest.mark.parametrize("data, field", [
    ({"day": "2027-13-01", "is_open": "1", "note": "x"}, "day"),
    ({"day": "2027-01-05", "is_open": "1", "note": ""}, "note"),
])
def test_bad_day_input_names_the_field_and_changes_nothing(client, operator, data, field):
    client.force_login(operator)
    response = client.post("/sop/calendar/day/", data)
    assert response.status_code == 400 and f'data-testid="field-error-{field}"' in response.content.decode()
    assert not TradingDay.objects.filter(day__year=2027).exists()


def test_reseeding_keeps_manual_days_and_is_audited(client, operator):
    client.force_login(operator)
    client.post("/sop/calendar/day/", {"day": "2026-12-28", "is_open": "0", "note": "临时休市"})
    TradingDay.objects.filter(day=date(2026, 12, 29)).delete()
    response = client.post("/sop/calendar/seed/")
    assert response.status_code == 302
    assert TradingDay.objects.get(day=date(2026, 12, 29)).is_open is True
    assert TradingDay.objects.get(day=date(2026, 12, 28)).is_open is False  # manual stays
    assert AuditLog.objects.filter(action="sop.calendar_seeded").exists()


def test_calendar_is_for_operators_and_admins(client, advisor, compliance):
    for user in (advisor, compliance):
        client.force_login(user)
        assert client.get("/sop/calendar/").status_code == 404
        assert client.post("/sop/calendar/day/", {"day": "2027-01-04", "is_open": "1", "note": "x"}).status_code == 404
    assert not TradingDay.objects.filter(day=date(2027, 1, 4)).exists()
