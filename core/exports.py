"""The one writer of every file the product hands out as CSV or XLSX (downloads and stored exports).

What it guarantees, for every caller:

- **Formula neutralisation.** Every text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return is written with a leading ``'`` so Excel, WPS and LibreOffice show it as text instead of
  running it (CSV/XLSX formula injection, e.g. a customer named ``=HYPERLINK("http://x","y")``). Numbers
  (``int``, ``float``, ``Decimal``) stay numbers and are never prefixed; ``None`` is an empty cell; dates are
  ISO text in CSV and dates in XLSX; dicts and lists are written as JSON text (then neutralised like any text).
- **Encoding.** CSV is UTF-8 with a BOM (Excel opens the Chinese headers correctly), ``\\r\\n`` line ends;
  XLSX is written with openpyxl's write-only workbook (flat memory for any number of rows).
- **File names.** ``content_disposition`` gives ``attachment; filename="<ascii>"`` and, for non-ASCII names
  such as a segment's Chinese name, an RFC 5987 ``filename*=UTF-8''…`` next to an ASCII fallback; control
  characters, quotes and path separators never reach the header.
- **Audit.** ``export_response`` and ``file_response`` take ``audit=ExportAudit(...)`` (the caller's action
  and details, unchanged from before) and write it with ``core.services.audit_record`` in the same request,
  before the first byte; ``audit=None`` must be passed explicitly, and only for files without customer data
  (a template header, aggregate analyses) or when the caller's service has recorded the export itself.
- **Responses** are ``Cache-Control: private, no-store``.

What it does NOT do: masking. Rows arrive already masked — the selectors and services that build them
decide what the viewer may see (``mobile_masked``, masked names, the scope's ``personal_data``). The writer
neither unmasks nor masks; it only makes whatever it is given inert in a spreadsheet.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any
from urllib.parse import quote

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils import timezone

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOM = "\ufeff"


@dataclass(frozen=True)
class ExportAudit:
    """How an export is recorded in the audit log (``core.services.audit_record`` arguments)."""

    actor: Any
    action: str
    target_type: str = ""
    target_id: str = ""
    details: dict = field(default_factory=dict)
    ip_address: str | None = None

    def record(self) -> None:
        from core.services import audit_record

        audit_record(actor=self.actor, action=self.action, target_type=self.target_type,
                     target_id=str(self.target_id), ip_address=self.ip_address, details=self.details)


# --- cells ---------------------------------------------------------------------------------------

def _text_safe(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def cell_safe(value: Any, *, for_xlsx: bool = False) -> Any:
    """One cell as it may be written: text neutralised, numbers kept, None → ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value if for_xlsx else str(value)
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, datetime):
        if for_xlsx:  # openpyxl refuses aware datetimes
            return timezone.localtime(value).replace(tzinfo=None) if timezone.is_aware(value) else value
        return value.isoformat()
    if isinstance(value, date | time):
        return value if for_xlsx else value.isoformat()
    if isinstance(value, dict | list | tuple):
        return _text_safe(json.dumps(value, ensure_ascii=False, default=str))
    return _text_safe(str(value))


def row_safe(row: Iterable[Any], *, for_xlsx: bool = False) -> list[Any]:
    return [cell_safe(value, for_xlsx=for_xlsx) for value in row]


# --- file names ----------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;]+')


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and, for other names, an RFC 5987 ``filename*``."""
    name = _UNSAFE_NAME.sub("_", str(filename)).strip(" .") or "export"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        path = PurePath(name)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("_.-") or "export"
        fallback = stem + re.sub(r"[^A-Za-z0-9.]", "", path.suffix)
        return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
    return f'attachment; filename="{name}"'


# --- writing -------------------------------------------------------------------------------------

class _Line:
    """A file-like object whose write() returns what it was given (csv.writer → one line at a time)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(*, header: list, rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The CSV as text pieces: BOM + header, then one line per row, every cell neutralised."""
    writer = csv.writer(_Line())
    yield BOM + writer.writerow(row_safe(header))
    for row in rows:
        yield writer.writerow(row_safe(row))


def csv_write(*, file: IO[bytes], header: list, rows: Iterable[Iterable[Any]]) -> int:
    """Write the CSV to a binary file; returns the number of data rows."""
    text = codecs.getwriter("utf-8")(file)
    lines = csv_lines(header=header, rows=rows)
    text.write(next(lines))  # BOM + header
    count = 0
    for line in lines:
        text.write(line)
        count += 1
    text.flush()
    return count


def xlsx_write(*, file: IO[bytes], header: list, rows: Iterable[Iterable[Any]], sheet_title: str = "Sheet1") -> int:
    """Write a one-sheet XLSX (openpyxl write-only) to a binary file; returns the number of data rows."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(re.sub(r"[\x00-\x1f\[\]\\/?*:]", "_", sheet_title)[:31] or "Sheet1")
    sheet.append(row_safe(header, for_xlsx=True))
    count = 0
    for row in rows:
        sheet.append(row_safe(row, for_xlsx=True))
        count += 1
    workbook.save(file)
    return count


# --- responses -----------------------------------------------------------------------------------

def _headers(response: HttpResponse, filename: str) -> HttpResponse:
    response["Content-Disposition"] = content_disposition(filename)
    response["Cache-Control"] = "private, no-store"
    return response


def export_response(*, filename: str, header: list, rows: Iterable[Iterable[Any]], audit: ExportAudit | None,
                    streaming: bool = True) -> HttpResponse | StreamingHttpResponse:
    """A CSV download. ``audit`` is recorded before the response is built (so it lands even if the client
    stops reading). ``streaming=False`` builds the whole file in memory — only for small tables."""
    if audit is not None:
        audit.record()
    lines = csv_lines(header=header, rows=rows)
    if streaming:
        response = StreamingHttpResponse(lines, content_type=CSV_CONTENT_TYPE)
    else:
        response = HttpResponse("".join(lines), content_type=CSV_CONTENT_TYPE)
    return _headers(response, filename)


def file_response(*, file: IO[bytes], filename: str, audit: ExportAudit | None) -> FileResponse:
    """The download of a file this module wrote earlier (a stored export or report)."""
    if audit is not None:
        audit.record()
    content_type = XLSX_CONTENT_TYPE if filename.lower().endswith(".xlsx") else CSV_CONTENT_TYPE
    response = FileResponse(file, content_type=content_type)
    return _headers(response, filename)
