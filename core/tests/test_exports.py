"""core/exports.py on its own: which cells are neutralised, numbers kept, file names, CSV and XLSX bytes."""

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from core.exports import cell_safe, content_disposition, csv_write, export_response, xlsx_write


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "=1+2"])
def test_text_starting_with_a_formula_character_gets_a_quote(text):
    assert cell_safe(text) == "'" + text
    assert cell_safe(text, for_xlsx=True) == "'" + text


def test_other_values_are_kept():
    assert [cell_safe(v) for v in ("张三", "a=b", "", None, -2, 1.5, Decimal("-3.20"), True)] == [
        "张三", "a=b", "", "", -2, 1.5, Decimal("-3.20"), "True"]
    assert cell_safe({"reason": "=x"}) == '{"reason": "=x"}' and cell_safe(["=x"]) == '["=x"]'  # JSON text
    assert cell_safe(date(2026, 1, 2)) == "2026-01-02"
    aware = datetime(2026, 1, 2, 3, 4, tzinfo=ZoneInfo("UTC"))
    assert cell_safe(aware, for_xlsx=True) == datetime(2026, 1, 2, 11, 4)  # Shanghai, naive for openpyxl


def test_file_names():
    assert content_disposition("audit-log.csv") == 'attachment; filename="audit-log.csv"'
    chinese = content_disposition("高净值客群-20260101-3.xlsx")
    assert chinese == ("attachment; filename=\"20260101-3.xlsx\"; "
                       "filename*=UTF-8''%E9%AB%98%E5%87%80%E5%80%BC%E5%AE%A2%E7%BE%A4-20260101-3.xlsx")
    hostile = content_disposition('a"b\r\nc/../d;e.csv')
    assert "\r" not in hostile and "\n" not in hostile and hostile.count('"') == 2 and "/" not in hostile


def test_csv_and_xlsx_files_carry_neutralised_text_and_real_numbers():
    rows = [["=cmd", -2, Decimal("1.50"), "ok"]]
    raw = io.BytesIO()
    assert csv_write(file=raw, header=["a", "b", "c", "d"], rows=rows) == 1
    assert raw.getvalue().startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(io.StringIO(raw.getvalue().decode("utf-8-sig")))) == [
        ["a", "b", "c", "d"], ["'=cmd", "-2", "1.50", "ok"]]

    raw = io.BytesIO()
    assert xlsx_write(file=raw, header=["@a", "b", "c", "d"], rows=rows, sheet_title="客群/成员") == 1
    sheet = openpyxl.load_workbook(io.BytesIO(raw.getvalue())).worksheets[0]
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [["'@a", "b", "c", "d"], ["'=cmd", -2, 1.5, "ok"]]
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_a_response_streams_with_headers_and_records_its_audit(db, operator):
    from core.exports import ExportAudit
    from core.models import AuditLog

    response = export_response(filename="x.csv", header=["h"], rows=iter([["=1"]]),
                               audit=ExportAudit(actor=operator, action="test.export", details={"n": 1}))
    assert AuditLog.objects.get(action="test.export").details == {"n": 1}  # before the first byte
    assert b"".join(response.streaming_content).decode("utf-8-sig") == "h\r\n'=1\r\n"
    assert response["Cache-Control"] == "private, no-store" and response["Content-Type"] == "text/csv; charset=utf-8"
