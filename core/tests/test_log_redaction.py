"""No log line keeps a query string, a mobile or an ID number: Django's request and server loggers, uvicorn's
access and error loggers, through our JSON formatter and uvicorn's own."""

import json
import logging

import pytest

from core.logging import JsonFormatter, RedactFilter, redact

MOBILE = "13800000000"
ID_NUMBER = "11010519900307123X"


def _lines(records) -> str:
    """The records as the console handler writes them (its filters, then the JSON formatter)."""
    formatter, redact_filter = JsonFormatter(), RedactFilter()
    out = []
    for record in records:
        redact_filter.filter(record)
        out.append(formatter.format(record))
    return "\n".join(out)


def test_redact_cuts_query_strings_and_masks_mobiles_and_id_numbers():
    assert redact(f"GET /customers/?q={MOBILE}&sort=name HTTP/1.1") == "GET /customers/?[redacted] HTTP/1.1"
    assert redact(f"https://example.com/x/?token=abc {ID_NUMBER}") == "https://example.com/x/?[redacted] " \
                                                                     "**************123X"
    assert redact(f"call +86{MOBILE} or {MOBILE}.") == "call +86138****0000 or 138****0000."
    assert redact("no question? fine") == "no question? fine"
    assert redact("order 202401011234567 and 1380000000012") == "order 202401011234567 and 1380000000012"


@pytest.mark.django_db
def test_a_failing_request_with_a_mobile_in_the_query_logs_no_mobile(client, advisor, monkeypatch, caplog):
    from customers import services

    def boom(**kwargs):
        raise RuntimeError("search backend down")

    monkeypatch.setattr(services, "customer_search", boom)
    client.raise_request_exception = False
    client.force_login(advisor)
    with caplog.at_level(logging.INFO):
        response = client.get(f"/customers/?q={MOBILE}&risk_level=C3")
    assert response.status_code == 500
    errors = [r for r in caplog.records if r.name == "django.request"]
    assert errors and errors[0].levelno == logging.ERROR
    assert MOBILE not in caplog.text
    line = _lines(errors)
    assert MOBILE not in line and "q=" not in line
    payload = json.loads(line.splitlines()[0])
    assert payload["request"] == "GET /customers/"  # the request's repr would carry the query string
    assert "RuntimeError" in payload["exc"]


def test_a_not_found_with_an_id_number_in_the_path_logs_it_masked(client, advisor, caplog):
    id_number = "110101198001175595"
    client.force_login(advisor)
    with caplog.at_level(logging.INFO):
        assert client.get(f"/customers/c/{id_number}/").status_code == 404
    line = _lines([r for r in caplog.records if r.name == "django.request"])
    assert line and id_number not in line
    assert json.loads(line.splitlines()[0])["request"] == "GET /customers/c/**************5595/"


def test_django_server_request_lines_are_redacted(caplog):
    with caplog.at_level(logging.INFO, logger="django.server"):
        logging.getLogger("django.server").warning('"%s" %s %s', f"GET /customers/?q={MOBILE} HTTP/1.1", "404", "179")
    record = caplog.records[-1]
    assert record.getMessage() == '"GET /customers/?[redacted] HTTP/1.1" 404 179'
    assert MOBILE not in _lines([record])


def test_uvicorn_access_and_error_records_are_redacted(caplog):
    from uvicorn.logging import AccessFormatter

    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactFilter) for f in access.filters)  # installed by CoreConfig.ready()
    with caplog.at_level(logging.INFO, logger="uvicorn"):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", f"/customers/?q={MOBILE}", "1.1", 500)
        logging.getLogger("uvicorn.error").error(f"Exception in ASGI application for /customers/?q={ID_NUMBER}")
    access_record, error_record = caplog.records[-2:]
    uvicorn_line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(access_record)
    assert uvicorn_line == '127.0.0.1:50000 - "GET /customers/?[redacted] HTTP/1.1" 500 Internal Server Error'
    text = _lines([access_record, error_record]) + caplog.text
    assert MOBILE not in text and ID_NUMBER not in text


def test_the_json_formatter_redacts_messages_extras_and_tracebacks():
    try:
        raise ValueError(f"invalid literal for int() with base 10: '{MOBILE}'")
    except ValueError:
        import sys

        record = logging.getLogger("core.test").makeRecord(
            "core.test", logging.ERROR, __file__, 1, "lookup of %s failed", (ID_NUMBER,), sys.exc_info(),
            extra={"path": f"/customers/?q={MOBILE}"})
    line = JsonFormatter().format(record)
    assert MOBILE not in line and ID_NUMBER not in line
    payload = json.loads(line)
    assert payload["message"] == "lookup of **************123X failed"
    assert payload["path"] == "/customers/?[redacted]"
    assert "138****0000" in payload["exc"]
