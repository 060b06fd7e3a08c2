"""core/staff_services.py: each admin action on staff accounts, its guards, and audit rows that carry no secret."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog, Branch, Role, User
from core.staff_selectors import staff_holdings, staff_list, staff_lockouts
from core.staff_services import (
    StaffError,
    staff_activate,
    staff_create,
    staff_deactivate,
    staff_password_changed,
    staff_password_reset,
    staff_unlock,
    staff_update,
)
from customers.tests.factories import CustomerFactory, TaskFactory

pytestmark = pytest.mark.django_db
STRONG = "Quiet-River-Stone-58"


def _audit_text() -> str:
    return json.dumps([[r.action, r.reason, r.details, r.actor_label] for r in AuditLog.objects.all()],
                      ensure_ascii=False, default=str)


def _fields(exc: ApplicationError) -> dict:
    return {d["field"]: d["message"] for d in exc.details}


@pytest.fixture
def bj(db):
    return Branch.objects.get_or_create(code="BJ01", defaults={"name": "BJ01 营业部"})[0]


def test_create_with_a_generated_password_that_must_be_changed(admin_user, bj):
    user, password = staff_create(actor=admin_user, username="li_lei", display_name="李雷", role="advisor",
                                  branch_code="BJ01", employee_code="E1234", ip_address="10.0.0.9")
    user.refresh_from_db()
    assert (user.role, user.branch, user.employee_code, user.display_name) == ("advisor", bj, "E1234", "李雷")
    assert user.is_active and not user.is_staff and user.must_change_password
    assert password and len(password) >= 10 and user.check_password(password)
    row = AuditLog.objects.get(action="staff.create")
    assert (row.actor, row.target_id, row.ip_address) == (admin_user, "li_lei", "10.0.0.9")
    assert row.details["password_mode"] == "generated" and row.details["branch"] == "BJ01"
    assert password not in _audit_text()


def test_create_with_a_typed_password_and_admin_access_for_admins(admin_user):
    user, generated = staff_create(actor=admin_user, username="it_ops", display_name="运维", role="admin",
                                   password=STRONG)
    assert generated is None and user.check_password(STRONG) and user.must_change_password
    assert user.is_staff and user.is_superuser  # the admin role keeps Django admin access (staff_upsert)
    assert AuditLog.objects.get(action="staff.create").details["password_mode"] == "set_by_admin"
    assert STRONG not in _audit_text()


def test_create_rejects_each_bad_field_by_name_and_stores_nothing(admin_user, advisor, bj):
    before_users, before_audit = User.objects.count(), AuditLog.objects.count()
    with pytest.raises(ApplicationError) as caught:
        staff_create(actor=admin_user, username="ADVISOR_A", display_name="", role="advisor",
                     employee_code=advisor.employee_code, password="12345")
    fields = _fields(caught.value)
    assert caught.value.code == StaffError.INVALID
    assert "已被使用" in fields["username"]  # case-insensitive duplicate of advisor_a
    assert "姓名" in fields["display_name"]
    assert "营业部" in fields["branch"]  # an advisor needs a branch
    assert advisor.employee_code in fields["employee_code"] and "已被" in fields["employee_code"]
    assert fields["password"]  # Django's validators: too short, too common, entirely numeric
    with pytest.raises(ApplicationError) as caught:
        staff_create(actor=admin_user, username="new_one", display_name="新人", role="branch_manager",
                     branch_code="NOPE9")
    assert _fields(caught.value) == {"branch": "营业部“NOPE9”不存在"}
    with pytest.raises(ApplicationError) as caught:
        staff_create(actor=admin_user, username="bad name!", display_name="x", role="boss")
    assert set(_fields(caught.value)) == {"username", "role"}
    assert (User.objects.count(), AuditLog.objects.count()) == (before_users, before_audit)


def test_only_admins_may_administer_staff(branch_manager, advisor):
    with pytest.raises(ApplicationError) as caught:
        staff_create(actor=branch_manager, username="x1", display_name="x", role="operator")
    assert caught.value.code == StaffError.NOT_ALLOWED and caught.value.status_code == 403
    with pytest.raises(ApplicationError):
        staff_password_reset(actor=branch_manager, user=advisor)
    assert not User.objects.filter(username="x1").exists()


def test_update_reassigns_and_audits_each_change(admin_user, operator, bj):
    operator.wecom_userid = "wx_operator"
    operator.save()
    updated = staff_update(actor=admin_user, user=operator, display_name="王运营", role="branch_manager",
                           branch_code="BJ01", employee_code="O7777")
    updated.refresh_from_db()
    assert (updated.role, updated.branch, updated.employee_code, updated.display_name) == (
        "branch_manager", bj, "O7777", "王运营")
    assert updated.wecom_userid == "wx_operator"  # not touched by an edit
    changes = AuditLog.objects.get(action="staff.update").details["changes"]
    assert changes == {"display_name": ["operator_a", "王运营"], "role": ["operator", "branch_manager"],
                       "branch": [None, "BJ01"], "employee_code": ["O9001", "O7777"]}
    staff_update(actor=admin_user, user=updated, display_name="王运营", role="admin", branch_code="",
                 employee_code="O7777")
    updated.refresh_from_db()
    assert updated.is_superuser and updated.branch is None
    # saving without a change writes no audit row
    staff_update(actor=admin_user, user=updated, display_name="王运营", role="admin", employee_code="O7777")
    assert AuditLog.objects.filter(action="staff.update").count() == 2


def test_update_validates_like_create(admin_user, operator, advisor):
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=admin_user, user=operator, display_name="x", role="advisor", branch_code="",
                     employee_code=advisor.employee_code)
    assert set(_fields(caught.value)) == {"branch", "employee_code"}
    operator.refresh_from_db()
    assert operator.role == "operator" and not AuditLog.objects.filter(action="staff.update").exists()


def test_update_guards_own_role_the_last_admin_and_advisors_with_clients(admin_user, advisor, bj):
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=admin_user, user=admin_user, display_name="a", role="operator")
    assert _fields(caught.value) == {"role": "不能修改自己的角色"}
    CustomerFactory(advisor=advisor)
    Branch.objects.create(code="SH09", name="上海九")
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=admin_user, user=advisor, display_name="a", role="advisor", branch_code="SH09",
                     employee_code=advisor.employee_code)
    assert "1 位客户" in _fields(caught.value)["branch"]
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=admin_user, user=advisor, display_name="a", role="operator",
                     employee_code=advisor.employee_code)
    assert "客户转接" in _fields(caught.value)["role"]
    advisor.refresh_from_db()
    assert (advisor.role, advisor.branch) == ("advisor", bj)
    # the name and employee code of an advisor with clients can still change
    staff_update(actor=admin_user, user=advisor, display_name="新名字", role="advisor", branch_code="BJ01",
                 employee_code="E5555")


def test_anyone_holding_clients_keeps_role_and_branch_until_they_are_handed_over(admin_user, branch_manager):
    """Older data may name a manager as a client's advisor: moving that manager to another branch as an advisor
    would carry the client's personal data across branches."""
    CustomerFactory(advisor=branch_manager)
    Branch.objects.create(code="SH09", name="上海九")
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=admin_user, user=branch_manager, display_name="m", role="advisor", branch_code="SH09",
                     employee_code=branch_manager.employee_code)
    assert "客户转接" in _fields(caught.value)["role"]
    branch_manager.refresh_from_db()
    assert (branch_manager.role, branch_manager.branch.code) == ("branch_manager", "BJ01")


def test_the_last_active_admin_stays_even_for_an_admin_deactivated_meanwhile(admin_user, make_staff):
    other = make_staff("admin_b", "admin", employee_code="A9002")
    stale_other = User.objects.get(pk=other.pk)
    staff_deactivate(actor=admin_user, user=other)
    # admin_b's request was already under way: admin_a is now the last active admin
    with pytest.raises(ApplicationError) as caught:
        staff_deactivate(actor=stale_other, user=admin_user)
    assert caught.value.code == StaffError.LAST_ADMIN
    with pytest.raises(ApplicationError) as caught:
        staff_update(actor=stale_other, user=admin_user, display_name="x", role="operator")
    assert caught.value.code == StaffError.INVALID and _fields(caught.value)["role"].startswith("这是最后一位")
    admin_user.refresh_from_db()
    assert admin_user.is_active and admin_user.role == Role.ADMIN


def test_deactivate_reports_what_the_advisor_still_holds(admin_user, advisor):
    customer = CustomerFactory(advisor=advisor)
    CustomerFactory(advisor=advisor)
    TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now())
    TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now(), status="done", outcome="reached",
                completed_at=timezone.now())
    assert staff_holdings(user=advisor) == {"clients": 2, "open_tasks": 1}
    assert staff_deactivate(actor=admin_user, user=advisor) == {"clients": 2, "open_tasks": 1}
    advisor.refresh_from_db()
    assert not advisor.is_active
    row = AuditLog.objects.get(action="staff.deactivate")
    assert row.details == {"user_id": advisor.pk, "clients": 2, "open_tasks": 1} and row.actor == admin_user
    with pytest.raises(ApplicationError) as caught:
        staff_deactivate(actor=admin_user, user=advisor)
    assert caught.value.code == StaffError.ALREADY
    staff_activate(actor=admin_user, user=advisor)
    advisor.refresh_from_db()
    assert advisor.is_active and AuditLog.objects.filter(action="staff.activate").count() == 1


def test_an_admin_cannot_deactivate_themselves(admin_user):
    with pytest.raises(ApplicationError) as caught:
        staff_deactivate(actor=admin_user, user=admin_user)
    assert caught.value.code == StaffError.SELF
    admin_user.refresh_from_db()
    assert admin_user.is_active and not AuditLog.objects.filter(action="staff.deactivate").exists()


def test_password_reset_generated_or_typed_and_validated(admin_user, advisor):
    generated = staff_password_reset(actor=admin_user, user=advisor)
    advisor.refresh_from_db()
    assert advisor.check_password(generated) and advisor.must_change_password
    assert not advisor.check_password("correct-horse-42")
    with pytest.raises(ApplicationError) as caught:
        staff_password_reset(actor=admin_user, user=advisor, password="advisor_a1")  # like the username, short
    assert set(_fields(caught.value)) == {"password"}
    advisor.refresh_from_db()
    assert advisor.check_password(generated)  # a refused password changes nothing
    assert staff_password_reset(actor=admin_user, user=advisor, password=STRONG) is None
    advisor.refresh_from_db()
    assert advisor.check_password(STRONG)
    modes = list(AuditLog.objects.filter(action="staff.password_reset").order_by("id")
                 .values_list("details__password_mode", flat=True))
    assert modes == ["generated", "set_by_admin"]
    text = _audit_text()
    assert generated not in text and STRONG not in text
    with pytest.raises(ApplicationError) as caught:
        staff_password_reset(actor=admin_user, user=admin_user)
    assert caught.value.code == StaffError.SELF


def test_password_changed_ends_the_must_change_state(admin_user, advisor):
    staff_password_reset(actor=admin_user, user=advisor)
    advisor.refresh_from_db()
    staff_password_changed(user=advisor)
    advisor.refresh_from_db()
    assert not advisor.must_change_password
    row = AuditLog.objects.get(action="staff.password_change")
    assert row.actor == advisor and row.details["after_reset"] is True


def test_unlock_lifts_a_real_lockout_after_failed_logins_through_the_login_form(client, admin_user, advisor):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/accounts/login/", {"username": advisor.username, "password": "wrong-one"},
                               REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 429  # the fifth failure locks
    refused = client.post("/accounts/login/", {"username": advisor.username, "password": "correct-horse-42"},
                          REMOTE_ADDR="10.1.2.3")
    assert refused.status_code == 429 and "_auth_user_id" not in client.session

    lockouts = staff_lockouts()
    assert set(lockouts) == {advisor.username}
    lockout = lockouts[advisor.username]
    started = AuditLog.objects.get(action="auth.lockout", target_id=advisor.username)  # one row per lockout
    assert lockout["since"] == started.created_at and lockout["ip_addresses"] == ["10.1.2.3"]
    assert lockout["until"] > timezone.now() + settings.AXES_COOLOFF_TIME - timedelta(minutes=1)
    assert [u.username for u in staff_list(filters={"locked": True})] == [advisor.username]
    assert staff_lockouts(now=timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=5)) == {}

    assert staff_unlock(actor=admin_user, user=advisor, ip_address="10.9.9.9") >= 1
    assert staff_lockouts() == {}
    row = AuditLog.objects.get(action="staff.unlock")
    assert row.details["was_locked"] is True and row.details["ip_addresses"] == ["10.1.2.3"]
    assert row.actor == admin_user and row.target_id == advisor.username
    ok = client.post("/accounts/login/", {"username": advisor.username, "password": "correct-horse-42"},
                     REMOTE_ADDR="10.1.2.3")
    assert ok.status_code == 302 and client.session["_auth_user_id"] == str(advisor.pk)
    assert "correct-horse-42" not in _audit_text() and "wrong-one" not in _audit_text()


def test_staff_list_filters(admin_user, advisor, other_branch_advisor, operator):
    def names(**filters):
        return {u.username for u in staff_list(filters=filters)}

    assert names(role="advisor") == {advisor.username, other_branch_advisor.username}
    assert names(branch="SH01") == {other_branch_advisor.username}
    assert names(q="E9001") == {advisor.username} and names(q="OPERATOR") == {operator.username}
    staff_deactivate(actor=admin_user, user=operator)
    assert names(status="inactive") == {operator.username}
    assert operator.username not in names(status="active")
    CustomerFactory(advisor=advisor)
    assert next(u for u in staff_list(filters={}) if u.pk == advisor.pk).client_count == 1
