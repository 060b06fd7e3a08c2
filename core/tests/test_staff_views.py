"""The 用户与权限 pages over HTTP: admins only (404 for everyone else), validation messages next to the field with
nothing stored, the one-time password shown once, the must-change-password state, the 离职继承 link."""

import re

import pytest
from django.conf import settings
from django.urls import reverse

from core.models import AuditLog, User
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
STRONG = "Quiet-River-Stone-58"


def _error(response, field: str) -> str:
    match = re.search(rf'data-testid="error-{field}">([^<]*)<', response.content.decode())
    assert match, f"no error shown for {field}"
    return match.group(1)


def _new(**overrides):
    data = {"username": "han_mei", "display_name": "韩梅梅", "role": "advisor", "branch": "BJ01",
            "employee_code": "E4242", "password_mode": "generated", "password": ""}
    data.update(overrides)
    return data


@pytest.mark.parametrize("role", ["advisor", "branch_manager", "hq_manager", "operator", "compliance"])
def test_other_roles_get_404_on_every_page_and_action(client, make_staff, advisor, role):
    user = make_staff(f"someone_{role}", role, "BJ01" if role in ("advisor", "branch_manager") else None)
    client.force_login(user)
    for url in ("/settings/users/", "/settings/users/new/", f"/settings/users/{advisor.pk}/"):
        assert client.get(url).status_code == 404, url
    for action in ("deactivate", "activate", "password", "unlock"):
        assert client.post(f"/settings/users/{advisor.pk}/{action}/").status_code == 404, action
    assert client.post("/settings/users/new/", _new()).status_code == 404
    advisor.refresh_from_db()
    assert advisor.is_active and not User.objects.filter(username="han_mei").exists()
    assert "用户与权限" not in client.get("/").content.decode()


def test_admin_sees_the_sidebar_entry_and_the_list(client, admin_user, advisor, other_branch_advisor):
    client.force_login(admin_user)
    home = client.get("/").content.decode()
    assert 'data-nav="users"' in home and "用户与权限" in home
    page = client.get("/settings/users/?role=advisor&branch=SH01").content.decode()
    assert 'data-staff="advisor_other"' in page and 'data-staff="advisor_a"' not in page
    assert "共 1 位用户" in page and "营业部：" in page  # the filter as a chip


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"username": "ADVISOR_A"}, "username", "用户名“ADVISOR_A”已被使用"),
    ({"employee_code": "E9001"}, "employee_code", "工号“E9001”已被 advisor_a 使用"),
    ({"branch": ""}, "branch", "投顾和营业部经理必须选择所属营业部"),
    ({"role": "branch_manager", "branch": "ZZ99"}, "branch", "营业部“ZZ99”不存在"),
    ({"password_mode": "set_by_admin", "password": "12345678"}, "password", "密码"),
    ({"password_mode": "set_by_admin", "password": ""}, "password", "选择“由我设置”时请填写密码"),
    ({"display_name": ""}, "display_name", ""),
    ({"role": "king"}, "role", ""),
])
def test_create_names_the_field_and_the_reason_and_stores_nothing(client, admin_user, advisor, overrides, field,
                                                                  message):
    client.force_login(admin_user)
    audit_before = AuditLog.objects.count()
    response = client.post("/settings/users/new/", _new(**overrides))
    assert response.status_code == 400
    assert message in _error(response, field)
    assert not User.objects.filter(username__in=["han_mei", "ADVISOR_A"]).exclude(pk=advisor.pk).exists()
    assert AuditLog.objects.count() == audit_before


def test_create_shows_the_one_time_password_once(client, admin_user, advisor):  # advisor: branch BJ01 exists
    client.force_login(admin_user)
    response = client.post("/settings/users/new/", _new())
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    password = re.search(r'data-testid="one-time-password-value">([^<]+)<', response.content.decode()).group(1)
    user = User.objects.get(username="han_mei")
    assert user.check_password(password) and user.must_change_password
    detail = client.get(f"/settings/users/{user.pk}/").content.decode()
    assert password not in detail and "staff.create" in detail


def test_create_with_a_typed_password_redirects_to_the_account(client, admin_user, advisor):
    client.force_login(admin_user)
    response = client.post("/settings/users/new/", _new(password_mode="set_by_admin", password=STRONG))
    user = User.objects.get(username="han_mei")
    assert response.status_code == 302 and response["Location"] == f"/settings/users/{user.pk}/"
    assert user.check_password(STRONG) and STRONG not in client.get(response["Location"]).content.decode()


def test_edit_validates_and_saves(client, admin_user, advisor, operator):
    client.force_login(admin_user)
    url = f"/settings/users/{operator.pk}/"
    response = client.post(url, {"display_name": "x", "role": "advisor", "branch": "", "employee_code": "E9001"})
    assert response.status_code == 400
    assert "必须选择所属营业部" in _error(response, "branch") and "已被 advisor_a 使用" in _error(response, "employee_code")
    operator.refresh_from_db()
    assert operator.role == "operator"
    response = client.post(url, {"display_name": "新运营", "role": "operator", "branch": "", "employee_code": "O1"})
    assert response.status_code == 302
    operator.refresh_from_db()
    assert (operator.display_name, operator.employee_code) == ("新运营", "O1")
    own = client.post(f"/settings/users/{admin_user.pk}/",
                      {"display_name": "a", "role": "operator", "branch": "", "employee_code": "A9001"})
    assert own.status_code == 400 and _error(own, "role") == "不能修改自己的角色"


def test_password_reset_page_validates_and_generates(client, admin_user, advisor):
    client.force_login(admin_user)
    url = f"/settings/users/{advisor.pk}/password/"
    weak = client.post(url, {"password_mode": "set_by_admin", "password": "password"})
    assert weak.status_code == 400 and _error(weak, "password")
    advisor.refresh_from_db()
    assert advisor.check_password("correct-horse-42") and not advisor.must_change_password
    response = client.post(url, {"password_mode": "generated"})
    password = re.search(r'data-testid="one-time-password-value">([^<]+)<', response.content.decode()).group(1)
    advisor.refresh_from_db()
    assert advisor.check_password(password) and advisor.must_change_password
    own = client.post(f"/settings/users/{admin_user.pk}/password/", {"password_mode": "generated"}, follow=True)
    assert "修改自己的密码" in own.content.decode()


def test_deactivating_an_advisor_with_clients_offers_the_resigned_transfer(client, admin_user, advisor):
    CustomerFactory(advisor=advisor)
    CustomerFactory(advisor=advisor)
    client.force_login(admin_user)
    page = client.post(f"/settings/users/{advisor.pk}/deactivate/", follow=True).content.decode()
    assert "名下仍有 2 位客户" in page and 'data-testid="handover-link"' in page
    assert "停用员工账号" in page and ">staff.deactivate<" not in page  # the account's history in words
    link = re.search(r'href="([^"]+)" data-testid="handover-link"', page).group(1).replace("&amp;", "&")
    assert link == f"/integrations/wecom/transfers/new/?advisor={advisor.pk}"
    form = client.get(link)
    assert form.status_code == 200 and not form.context["form"].is_bound
    assert re.search(rf'<option value="{advisor.pk}" selected>', form.content.decode())
    assert 'value="resigned"' in form.content.decode()
    own = client.post(f"/settings/users/{admin_user.pk}/deactivate/", follow=True).content.decode()
    assert "不能停用自己的账号" in own
    admin_user.refresh_from_db()
    assert admin_user.is_active


def test_a_deactivated_users_open_session_ends(client, admin_user, advisor):
    from django.test import Client

    theirs = Client()
    theirs.force_login(advisor)
    assert theirs.get("/").status_code == 200
    client.force_login(admin_user)
    client.post(f"/settings/users/{advisor.pk}/deactivate/")
    assert theirs.get("/")["Location"].startswith("/accounts/login/")


def test_locked_accounts_are_listed_with_since_and_unlocked_from_the_list(client, admin_user, advisor):
    from django.test import Client

    outsider = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        outsider.post("/accounts/login/", {"username": advisor.username, "password": "nope"})
    client.force_login(admin_user)
    page = client.get("/settings/users/?locked=on").content.decode()
    assert 'data-locked="advisor_a"' in page and 'data-staff="advisor_a"' in page and "共 1 位用户" in page
    since = AuditLog.objects.get(action="auth.lockout").created_at
    from django.utils import timezone

    assert timezone.localtime(since).strftime("%Y-%m-%d %H:%M") in page
    response = client.post(f"/settings/users/{advisor.pk}/unlock/", {"next": "list"})
    assert response["Location"] == "/settings/users/"
    assert 'data-locked="advisor_a"' not in client.get("/settings/users/").content.decode()
    assert outsider.post("/accounts/login/", {"username": advisor.username,
                                              "password": "correct-horse-42"}).status_code == 302


def test_must_change_password_allows_only_the_password_page_until_changed(client, admin_user, advisor):
    client.force_login(admin_user)
    client.post(f"/settings/users/{advisor.pk}/password/", {"password_mode": "set_by_admin", "password": STRONG})
    client.logout()
    assert client.post("/accounts/login/", {"username": advisor.username, "password": STRONG}).status_code == 302
    for url in ("/", "/customers/", "/admin/"):
        assert client.get(url)["Location"] == "/accounts/password/", url
    assert client.get("/customers/", HTTP_HX_REQUEST="true")["HX-Redirect"] == "/accounts/password/"
    form = client.get("/accounts/password/")
    assert form.status_code == 200 and 'data-testid="must-change-password"' in form.content.decode()
    same = client.post("/accounts/password/", {"old_password": STRONG, "new_password1": STRONG,
                                               "new_password2": STRONG})
    assert same.status_code == 200 and "新密码不能与当前密码相同" in same.content.decode()
    done = client.post("/accounts/password/", {"old_password": STRONG, "new_password1": "Mine-Own-Secret-91",
                                               "new_password2": "Mine-Own-Secret-91"})
    assert done.status_code == 302
    advisor.refresh_from_db()
    assert not advisor.must_change_password and advisor.check_password("Mine-Own-Secret-91")
    assert client.get("/").status_code == 200
    assert AuditLog.objects.filter(action="staff.password_change", actor=advisor).exists()


def test_the_django_admin_cannot_bypass_the_staff_rules(client, admin_user, advisor):
    """Staff are managed on 用户与权限 only: Django's admin shows them but cannot add, change or delete one
    (no unaudited account, no skipped password change, no superuser flag on an advisor)."""
    client.force_login(admin_user)
    assert client.get(reverse("admin:core_user_changelist")).status_code == 200
    assert client.post(reverse("admin:core_user_add"), {"username": "sneaky", "password1": "x" * 12,
                                                        "password2": "x" * 12}).status_code == 403
    change = reverse("admin:core_user_change", args=[advisor.pk])
    client.post(change, {"username": advisor.username, "is_superuser": "on", "is_staff": "on", "role": "advisor"})
    advisor.refresh_from_db()
    assert not advisor.is_superuser and not advisor.is_staff
    assert not type(advisor).objects.filter(username="sneaky").exists()
