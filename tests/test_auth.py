import pytest
from django.conf import settings
from django.urls import reverse

LOGIN = "/accounts/login/"


def _post_login(client, username, password):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR="10.1.2.3")


@pytest.mark.django_db
def test_login_and_logout(client, advisor):
    response = _post_login(client, advisor.username, "correct-horse-42")
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get("/").status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/")["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_wrong_password_is_refused_with_a_message(client, advisor):
    response = _post_login(client, advisor.username, "wrong")
    assert response.status_code == 200
    assert "用户名或密码不正确" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_even_for_the_right_password(client, advisor):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _post_login(client, advisor.username, "wrong")
    locked = _post_login(client, advisor.username, "correct-horse-42")
    assert locked.status_code == 429
    assert "账号已暂时锁定" in locked.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_pages_require_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


@pytest.mark.django_db
def test_password_change(client, advisor):
    client.force_login(advisor)
    response = client.post(reverse("password_change"), {
        "old_password": "correct-horse-42", "new_password1": "Another-Long-Pass-77", "new_password2": "Another-Long-Pass-77",
    })
    assert response.status_code == 302
    advisor.refresh_from_db()
    assert advisor.check_password("Another-Long-Pass-77")


@pytest.mark.django_db
def test_csrf_is_enforced_on_login(advisor):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(LOGIN, {"username": advisor.username, "password": "x"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_ui_is_chinese_by_default_and_english_on_request(client):
    assert "登录" in client.get(LOGIN).content.decode()
    assert "登录" in client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    client.post(reverse("set_language"), {"language": "en", "next": LOGIN})
    english = client.get(LOGIN).content.decode()
    assert "Log in" in english and "用户名" not in english


def test_answers_with_personal_data_are_never_cached(client, advisor):
    """Every page a signed-in user gets and every API answer say no-store."""
    from django.urls import reverse

    from customers.tests.factories import CustomerFactory

    customer = CustomerFactory(advisor=advisor)
    client.force_login(advisor)
    for url in (reverse("customers:list"), reverse("customers:detail", args=[customer.external_id])):
        assert "no-store" in client.get(url).headers["Cache-Control"], url
    assert "no-store" in client.get("/api/v1/customers/").headers["Cache-Control"]  # even the 401


def test_an_uploaded_import_is_readable_by_the_product_only(settings, tmp_path, operator):
    """The file keeps clear mobiles and ID numbers until it is imported: no other user on the host reads it."""
    import os

    from django.core.files.base import ContentFile

    from customers.imports import import_job_create

    settings.MEDIA_ROOT = str(tmp_path)
    job = import_job_create(actor=operator, file=ContentFile("客户号,姓名,手机号\nP1,张三,13800138000\n".encode(),
                                                             name="c.csv"), dry_run=True, enqueue=False)
    assert os.stat(job.file.path).st_mode & 0o777 == 0o600
