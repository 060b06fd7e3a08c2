import contextvars
import json
import logging
import re
from datetime import UTC, datetime

from django.http import HttpRequest

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

# the query string of a URL path ("/customers/?q=13800000000" → "/customers/?[redacted]"): searches, filters and
# tokens travel there, so no log line keeps one
_QUERY_STRING = re.compile(r"(/[^\s?#\"'<>]*)\?[^\s#\"'<>]+")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{14}([0-9]{3}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9])((?:\+?86)?1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")


def redact(text: str) -> str:
    """``text`` with query strings cut from URL paths and anything shaped like a mainland mobile or an 18-digit ID
    number masked as the pages mask them (138****5678, **************1234)."""
    text = _QUERY_STRING.sub(r"\1?[redacted]", text)
    text = _ID_NUMBER.sub(lambda m: "*" * 14 + m.group(1), text)
    return _MOBILE.sub(r"\1****\2", text)


def _redact_arg(value):
    return redact(value) if isinstance(value, str) else value


class RedactFilter(logging.Filter):
    """Redacts a record in place (``redact`` on its message and string arguments), so every handler and test capture
    sees it clean. On the console handler and on the request loggers: django.request, django.server (its message
    carries the request line with the query string), uvicorn and uvicorn.access (the full path is an argument)."""

    def filter(self, record):
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        elif record.args:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True
            if redact(message) != message:  # the format string itself carried it: keep the clean text only
                record.msg, record.args = redact(message), ()
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def uvicorn_redact_install() -> None:
    """Put RedactFilter on uvicorn's loggers. uvicorn configures them (and their handlers) before Django starts;
    naming them in LOGGING would replace those handlers and turn access logging on or off regardless of
    ``--no-access-log``, so the filter is added here instead. The access line's path is an argument, so
    uvicorn's own formatter still works on the redacted record."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())


def _plain(value):
    """An extra field as JSON shows it; a request is its method and path only (its repr has the query string)."""
    if isinstance(value, bool | int | float | None):
        return value
    if isinstance(value, HttpRequest):
        return redact(f"{value.method} {value.path}")  # a path may hold a mobile or ID number (/customers/c/<id>/)
    return redact(value if isinstance(value, str) else str(value))


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Extra fields passed with ``extra=`` are kept; never log personal data (what slips
    through anyway — a query string, a mobile or ID number in a message, an exception or an extra — is redacted)."""

    def format(self, record):
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = _plain(value)
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)
