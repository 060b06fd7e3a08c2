import logging

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path


def boom(request):
    raise RuntimeError("secret internals")


def logs(request):
    logging.getLogger("scrm.test").warning("inside a request")
    return HttpResponse("ok")


handler500 = "core.views.error_500"
urlpatterns = [path("boom/", boom), path("logs/", logs), path("", include("scrm.urls"))]


@pytest.mark.django_db
def test_unknown_page_is_a_friendly_404(client, advisor):
    client.force_login(advisor)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "页面不存在" in response.content.decode()


@pytest.mark.django_db
def test_server_error_shows_no_stack_trace(settings, advisor):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    response = client.get("/boom/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "系统出现错误" in body
    assert "secret internals" not in body and "Traceback" not in body


@pytest.mark.django_db
def test_every_response_carries_a_request_id_which_the_logs_carry_too(settings, client, capsys):
    settings.ROOT_URLCONF = __name__
    assert len(client.get("/accounts/login/")["X-Request-ID"]) == 32
    response = client.get("/logs/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    from core.logging import JsonFormatter, RequestIdFilter, request_id_var

    token = request_id_var.set("abc-123")
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("世界",), "levelname": "INFO", "name": "x"})
    RequestIdFilter().filter(record)
    request_id_var.reset(token)
    import json

    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "abc-123" and line["message"] == "hello 世界"
