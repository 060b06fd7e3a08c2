"""Path converters.

``extid``: a customer's external id in a URL. New ids follow one pattern (core.validators.EXTERNAL_ID_RE), but a
stored id may predate it or come from the admin; whatever it holds, its URL stays one path segment and reverses
(``/`` would otherwise make ``reverse()`` fail and every list showing that customer answer 500). ``~`` and ``/``
are escaped as ``~7E`` and ``~2F``; ids following the pattern appear unchanged."""

from django.urls import register_converter


class ExternalIdConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value.replace("~2F", "/").replace("~7E", "~")

    def to_url(self, value) -> str:
        return str(value).replace("~", "~7E").replace("/", "~2F")


def converters_register() -> None:
    register_converter(ExternalIdConverter, "extid")
