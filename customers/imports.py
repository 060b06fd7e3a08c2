"""Customer file import (CSV/XLSX) on top of ``customers.ingest.customer_bulk_upsert``.

A file is read as a stream in chunks of ``CHUNK_SIZE`` rows, so memory stays flat for a
million-row file. Each chunk is one transaction: its valid rows are upserted, its errors are
stored (personal data masked) and the job's counters move forward, together or not at all.
A bad row therefore never half-writes a good one, and a job whose worker died resumes after
the last committed chunk. A dry run goes through the same code and writes nothing to customers.

Files: CSV in UTF-8 (with or without BOM) or GB18030/GBK, comma- or tab-separated; XLSX (first
sheet, streamed with openpyxl read-only). Row 1 is the header; row numbers in errors are the
file's own (header = 1, first data row = 2; a CSV record spanning lines counts once). Blank
rows are skipped. An empty cell means "not given" (the stored value stays).

Header → field (case-insensitive; spaces, "-", a trailing "*" and "(必填)" are ignored):

=================  ==========================================================
field              accepted headers
=================  ==========================================================
external_id        客户号 客户编号 客户代码 external_id
name               姓名 客户姓名 客户名称 name
mobile             手机号 手机号码 手机 mobile
id_number          身份证号 身份证号码 证件号码 id_number
gender             性别 gender  (M/F/U or 男/女/未知)
birth_date         出生日期 生日 birth_date
branch             营业部 营业部代码 营业部编号 branch  (branch code)
advisor            投顾工号 投顾 客户经理工号 服务投顾 advisor  (employee code)
risk_level         风险等级 风险承受能力 风测等级 risk_level  (C1–C5)
risk_assessed_at   风测日期 风险测评日期 测评日期 risk_assessed_at
opened_at          开户日期 opened_at
channel            开户渠道 渠道 channel
utm_source         推广来源 utm_source
utm_medium         推广媒介 utm_medium
utm_campaign       推广活动 utm_campaign
total_assets       总资产 资产 total_assets
funnel_stage       开户进度 开户阶段 funnel_stage
region             地区 所在地区 region
occupation         职业 occupation
lifecycle_stage    生命周期 生命周期阶段 lifecycle_stage
custom fields      cf:<code> for every field; its name (label) too, when no
                   column above and no other field uses the same name
=================  ==========================================================

Custom field columns (customers/custom_fields.py) are validated per the field's definition (text length, number
range, date, options; a multiple choice as options separated by , 、 ; or |). A column of a deactivated field, or
``cf:`` with an unknown code, fails the header like any unknown column.

An unknown or repeated column, or a missing 客户号/姓名 column, fails the job before any row
is read: a misspelt "手机" column must not be dropped silently.

Limits (settings, from the environment): the upload is at most ``IMPORT_MAX_UPLOAD_MB`` and
``IMPORT_MAX_ROWS`` data rows. An .xlsx is a zip whose members are checked from its central
directory BEFORE openpyxl opens it (openpyxl loads every shared string into memory: a 400 KB file
can expand to gigabytes): the sum of uncompressed sizes (``IMPORT_XLSX_MAX_UNCOMPRESSED_MB``), any one
member (``IMPORT_XLSX_MAX_MEMBER_MB``), the compression ratio of members over 1 MB
(``IMPORT_XLSX_MAX_RATIO``) and the number of members (``IMPORT_XLSX_MAX_MEMBERS``). Python's zipfile
stops at a member's declared size, so the declared sizes bound what is decompressed. The checks run at
upload (the page's error, ``ApplicationError`` in ``import_job_create``, the command) and again in the job
on the stored file, before any row is read or written.

A job is claimed (``attempts`` + 1, ``attempt_rows`` = rows committed so far) before its file is opened.
A delivery that finds the job still running although its last attempt committed nothing (the worker died
opening the file or in its first chunk), or a stale job that used ``MAX_ATTEMPTS``, fails it once with
"处理中断…" instead of running the same file again: a poisoned file cannot crash worker after worker.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import logging
import re
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from core import crypto
from core.access import may
from core.errors import ApplicationError
from core.exports import csv_write
from core.models import Role
from core.validators import normalize_id_number, normalize_mobile
from customers.ingest import FIELDS, REQUIRED_FIELDS, customer_bulk_upsert
from customers.models import ImportJob, ImportJobError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
STALE_AFTER = timedelta(minutes=10)  # a running job without a heartbeat for this long may be taken over
ALLOWED_SUFFIXES = (".csv", ".xlsx")
DRY_RUN_FILE_TTL = timedelta(days=1)  # an unconfirmed dry run's upload (clear personal data) is purged after this
MAX_ATTEMPTS = 3  # claims of one job (first run + resumes after a lost worker); then it fails instead
RATIO_CHECKED_FROM = 1024 * 1024  # small members (styles, rels) may compress well; the ratio is checked above this
MB = 1024 * 1024


class ImportErrorCode(enum.StrEnum):
    UNSUPPORTED_FILE = "import_unsupported_file"
    EMPTY_FILE = "import_empty_file"
    NOT_CONFIRMABLE = "import_not_confirmable"
    FILE_GONE = "import_file_gone"
    FILE_TOO_LARGE = "import_file_too_large"
    TOO_MANY_ROWS = "import_too_many_rows"
    ARCHIVE_TOO_LARGE = "import_archive_too_large"  # an .xlsx that expands too much (decompression bomb)
    BAD_FILE = "import_bad_file"


COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("客户号", "客户编号", "客户代码"),
    "name": ("姓名", "客户姓名", "客户名称"),
    "mobile": ("手机号", "手机号码", "手机"),
    "id_number": ("身份证号", "身份证号码", "证件号码"),
    "gender": ("性别",),
    "birth_date": ("出生日期", "生日"),
    "branch": ("营业部", "营业部代码", "营业部编号"),
    "advisor": ("投顾工号", "投顾", "客户经理工号", "服务投顾"),
    "risk_level": ("风险等级", "风险承受能力", "风测等级"),
    "risk_assessed_at": ("风测日期", "风险测评日期", "测评日期"),
    "opened_at": ("开户日期",),
    "channel": ("开户渠道", "渠道"),
    "utm_source": ("推广来源",),
    "utm_medium": ("推广媒介",),
    "utm_campaign": ("推广活动",),
    "total_assets": ("总资产", "资产"),
    "funnel_stage": ("开户进度", "开户阶段"),
    "region": ("地区", "所在地区"),
    "occupation": ("职业",),
    "lifecycle_stage": ("生命周期", "生命周期阶段"),
}
assert set(COLUMN_ALIASES) == set(FIELDS)


def _header_key(text: str) -> str:
    text = str(text).replace("\ufeff", "").strip()
    text = re.sub(r"[（(]必填[)）]$", "", text).rstrip("*＊ ").strip()
    return re.sub(r"[\s\-]+", "_", text).lower()


_HEADER_TO_FIELD = {
    _header_key(alias): field for field, aliases in COLUMN_ALIASES.items() for alias in (field, *aliases)
}


class _JobLost(Exception):
    """Another runner took the job over; stop without touching it."""


class _JobFailed(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _FileRefused(_JobFailed):
    """A file over one of the limits: ApplicationError at upload, a failed job when found by the job."""

    def __init__(self, code: ImportErrorCode, message: str):
        super().__init__(message)
        self.code = code

    def application_error(self) -> ApplicationError:
        return ApplicationError(self.code, self.message)


# --- access ----------------------------------------------------------------------------------

def import_allowed(user) -> bool:
    return may(user, "customers.import")


def import_job_get_for_user(*, user, job_id: int) -> ImportJob:
    """The job if ``user`` may see it (its creator, or an admin); 404 otherwise."""
    if not import_allowed(user):
        raise Http404
    jobs = ImportJob.objects.select_related("created_by", "source_job")
    if user.role != Role.ADMIN:
        jobs = jobs.filter(created_by=user)
    try:
        return jobs.get(pk=job_id)
    except ImportJob.DoesNotExist:
        raise Http404 from None


def import_job_list_for_user(*, user, limit: int = 10) -> list[ImportJob]:
    if not import_allowed(user):
        return []
    jobs = ImportJob.objects.select_related("created_by")
    if user.role != Role.ADMIN:
        jobs = jobs.filter(created_by=user)
    return list(jobs[:limit])


def import_job_errors_first(*, job: ImportJob, limit: int = 20) -> list[ImportJobError]:
    return list(job.errors.order_by("row_number", "id")[:limit])


# --- creating jobs ---------------------------------------------------------------------------

def _enqueue(job_id: int) -> None:
    from customers.tasks import import_run

    transaction.on_commit(lambda: import_run.delay(job_id))


@transaction.atomic
def import_job_create(*, actor, file, dry_run: bool, original_name: str = "", enqueue: bool = True) -> ImportJob:
    """Store the uploaded file under MEDIA_ROOT and queue the run (after commit)."""
    name = Path(original_name or file.name or "").name
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise ApplicationError(ImportErrorCode.UNSUPPORTED_FILE, _("只支持 CSV 或 XLSX（.xlsx）文件"))
    if not file.size:
        raise ApplicationError(ImportErrorCode.EMPTY_FILE, _("文件是空的"))
    try:
        import_file_check(file=file, size=file.size)
    except _FileRefused as exc:
        raise exc.application_error() from None
    job = ImportJob(original_name=name[:255], dry_run=dry_run,
                    created_by=actor if getattr(actor, "pk", None) else None)
    job.file.save(f"{uuid.uuid4().hex}{suffix}", file, save=False)  # the user's file name may carry personal data
    job.save()
    if enqueue:
        _enqueue(job.pk)
    return job


@transaction.atomic
def import_job_confirm(*, actor, job: ImportJob, enqueue: bool = True) -> ImportJob:
    """Start the real import of a finished dry run's file; confirming twice returns the same job."""
    dry = ImportJob.objects.select_for_update().get(pk=job.pk)
    if not dry.dry_run or dry.status != ImportJob.Status.DONE:
        raise ApplicationError(ImportErrorCode.NOT_CONFIRMABLE, _("只有已完成的校验任务可以确认导入"))
    existing = ImportJob.objects.filter(source_job=dry).first()
    if existing is not None:
        return existing
    if not default_storage.exists(dry.file.name):
        raise ApplicationError(ImportErrorCode.FILE_GONE, _("上传的文件已过期清理，请重新上传"))
    real = ImportJob.objects.create(
        file=dry.file.name, original_name=dry.original_name, dry_run=False, source_job=dry,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    if enqueue:
        _enqueue(real.pk)
    return real


# --- reading files ---------------------------------------------------------------------------

def _kind_of(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise _FileRefused(ImportErrorCode.UNSUPPORTED_FILE, _("不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV"))
    return "csv"


def _file_kind(path: Path) -> str:
    with path.open("rb") as f:
        return _kind_of(f.read(8))


def _mb(size: int) -> str:
    return f"{size / MB:,.1f}"


def _size_check(size: int) -> None:
    limit = settings.IMPORT_MAX_UPLOAD_MB
    if size > limit * MB:
        raise _FileRefused(ImportErrorCode.FILE_TOO_LARGE, _(
            "文件过大（%(size)s MB），上限为 %(limit)s MB，请拆分后分批导入") % {"size": _mb(size), "limit": limit})


def _rows_check(rows: int) -> None:
    limit = settings.IMPORT_MAX_ROWS
    if rows > limit:
        raise _FileRefused(ImportErrorCode.TOO_MANY_ROWS, _(
            "文件行数过多（超过 %(limit)s 行的上限），请拆分后分批导入") % {"limit": f"{limit:,}"})


def _too_large(message: str, **values) -> _FileRefused:
    return _FileRefused(ImportErrorCode.ARCHIVE_TOO_LARGE, _("文件解压后过大：") + message % values
                        + _("。请确认是正常的 Excel 文件，或另存为 CSV、拆分后再导入"))


def _xlsx_archive_check(raw) -> None:
    """Refuse an .xlsx whose zip directory promises too much, without decompressing anything.

    The entry count is read from the end-of-central-directory record first, so a directory of millions of
    entries is refused before zipfile builds an object per entry."""
    bad = _FileRefused(ImportErrorCode.BAD_FILE, _("无法读取 Excel 文件，请确认是有效的 .xlsx 文件"))
    max_members = settings.IMPORT_XLSX_MAX_MEMBERS
    try:
        raw.seek(0)
        end = zipfile._EndRecData(raw)  # the stdlib's own EOCD reader (handles zip64)
        if end is None:
            raise bad
        if end[zipfile._ECD_ENTRIES_TOTAL] > max_members:
            raise _too_large(_("包含 %(n)s 个压缩成员，上限为 %(limit)s 个"),
                             n=f"{end[zipfile._ECD_ENTRIES_TOTAL]:,}", limit=f"{max_members:,}")
        raw.seek(0)
        with zipfile.ZipFile(raw) as archive:
            members = archive.infolist()
    except _FileRefused:
        raise
    except Exception:  # noqa: BLE001 - a damaged directory (BadZipFile, struct.error, OSError…) means the same
        raise bad from None
    finally:
        raw.seek(0)
    if len(members) > max_members:
        raise _too_large(_("包含 %(n)s 个压缩成员，上限为 %(limit)s 个"), n=f"{len(members):,}", limit=f"{max_members:,}")
    total, total_limit = sum(m.file_size for m in members), settings.IMPORT_XLSX_MAX_UNCOMPRESSED_MB
    if total > total_limit * MB:
        raise _too_large(_("共 %(size)s MB，上限为 %(limit)s MB"), size=_mb(total), limit=total_limit)
    member_limit = settings.IMPORT_XLSX_MAX_MEMBER_MB
    ratio_limit = settings.IMPORT_XLSX_MAX_RATIO
    for member in members:
        if member.file_size > member_limit * MB:
            raise _too_large(_("其中 %(name)s 解压后 %(size)s MB，单个部件上限为 %(limit)s MB"),
                             name=member.filename[:80], size=_mb(member.file_size), limit=member_limit)
        if member.file_size > RATIO_CHECKED_FROM and member.file_size > ratio_limit * max(member.compress_size, 1):
            raise _too_large(_("其中 %(name)s 的压缩比为 %(ratio)s 倍，上限为 %(limit)s 倍"),
                             name=member.filename[:80], ratio=f"{member.file_size // max(member.compress_size, 1):,}",
                             limit=ratio_limit)


def _csv_probe(raw) -> tuple[str, str, int]:
    """(encoding, delimiter, number of records incl. header) of a binary stream: one streaming pass that
    stops counting just past ``IMPORT_MAX_ROWS``."""
    stop_at = settings.IMPORT_MAX_ROWS + 2
    for encoding in ("utf-8-sig", "gb18030"):
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        try:
            first = text.readline()
            delimiter = "\t" if "\t" in first and "," not in first else ","
            text.seek(0)
            count = 0
            for _row in csv.reader(text, delimiter=delimiter):
                count += 1
                if count >= stop_at:
                    break
            return encoding, delimiter, count
        except UnicodeDecodeError:
            continue
        finally:
            text.detach()
            raw.seek(0)
    raise _JobFailed(_("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV"))


def import_limits() -> dict:
    """The limits as the upload page states them."""
    return {"max_upload_mb": settings.IMPORT_MAX_UPLOAD_MB, "max_rows": settings.IMPORT_MAX_ROWS,
            "max_rows_text": f"{settings.IMPORT_MAX_ROWS:,}"}


def import_file_check(*, file, size: int) -> None:
    """The limits a file must meet before it is stored or read: size, rows (CSV), the zip (XLSX).
    ``file`` is a binary stream (an upload, a Django File or an open file); raises ``_FileRefused``."""
    _size_check(size)
    file.seek(0)
    head = file.read(8)
    file.seek(0)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return  # an old .xls under another name: the job fails it with its own message
    if _kind_of(head) == "xlsx":
        _xlsx_archive_check(file)  # its rows are counted by the job, once the archive is known to be safe
        return
    try:
        _encoding, _delimiter, count = _csv_probe(file)
    except _FileRefused:
        raise
    except _JobFailed as exc:
        raise _FileRefused(ImportErrorCode.BAD_FILE, exc.message) from None
    _rows_check(max(count - 1, 0))


_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,15}:)?row[\s/>]")


def _xlsx_rows_count(sheet) -> int | None:
    """<row> elements of the sheet's XML, counted on the (bounded) stream without building cells; None
    when openpyxl does not expose the sheet's source."""
    source = getattr(sheet, "_get_source", None)
    if source is None:
        return None
    count, tail, overlap = 0, b"", 32
    with source() as f:
        while chunk := f.read(1 << 20):
            data = tail + chunk
            limit = len(data) - overlap
            count += sum(1 for m in _ROW_TAG.finditer(data) if m.start() < limit)
            tail = data[max(limit, 0):]
    return count + len(_ROW_TAG.findall(tail))


def _rows_capped(rows: Iterator) -> Iterator:
    """The sheet's rows, header included, stopping with the row limit's error past ``IMPORT_MAX_ROWS`` data rows.
    openpyxl pads the rows a sheet skips (``<row r="3000000">`` after row 2 gives three million rows), so the
    count of <row> elements checked before cannot bound the work on its own."""
    limit = settings.IMPORT_MAX_ROWS
    for index, row in enumerate(rows):
        if index > limit:
            raise _JobFailed(_("文件行数过多（超过 %(limit)s 行的上限），请拆分后分批导入") % {"limit": f"{limit:,}"})
        yield row


@contextlib.contextmanager
def _table_open(path: Path) -> Iterator[tuple[int, Iterator]]:
    """(data rows, iterator of row tuples starting with the header), after every limit is checked."""
    _size_check(path.stat().st_size)
    if _file_kind(path) == "xlsx":
        with path.open("rb") as raw:
            _xlsx_archive_check(raw)  # BEFORE openpyxl: it loads every shared string into memory
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - any parse failure means the same to the user
            raise _JobFailed(_("无法读取 Excel 文件，请确认是有效的 .xlsx 文件")) from None
        try:
            sheet = workbook.worksheets[0]
            rows = _xlsx_rows_count(sheet)
            if rows is None:
                rows = sheet.max_row or 0  # the sheet's dimension tag; 0 when the writer left it out
            _rows_check(max(rows - 1, 0))
            yield max(rows - 1, 0), _rows_capped(sheet.iter_rows(values_only=True))
        finally:
            workbook.close()
    else:
        with path.open("rb") as raw:
            encoding, delimiter, count = _csv_probe(raw)
        _rows_check(max(count - 1, 0))
        with path.open(encoding=encoding, newline="") as f:
            yield max(count - 1, 0), csv.reader(f, delimiter=delimiter)


def custom_field_columns(definitions=None) -> dict[str, str]:
    """Header key → ``cf:<code>`` for the custom fields: ``cf:<code>`` for every field (deactivated ones too, so
    their column is named as such), and the label of an active field when it is unambiguous (no built-in column
    and no other active field has the same name)."""
    from customers.custom_fields import COLUMN_PREFIX, definitions_by_code

    definitions = definitions_by_code() if definitions is None else definitions
    columns = {_header_key(f"{COLUMN_PREFIX}{code}"): f"{COLUMN_PREFIX}{code}" for code in definitions}
    labels: dict[str, list[str]] = {}
    for definition in definitions.values():
        if definition.active:
            labels.setdefault(_header_key(definition.label), []).append(definition.code)
    for key, codes in labels.items():
        if len(codes) == 1 and key not in _HEADER_TO_FIELD and key not in columns:
            columns[key] = f"{COLUMN_PREFIX}{codes[0]}"
    return columns


def import_header_map(header) -> tuple[list[str | None], list[tuple[str, str]]]:
    """Field per column (None = blank header, ignored) and header problems as (column, reason). Custom field
    columns map to ``cf:<code>``."""
    from customers.custom_fields import COLUMN_PREFIX, definitions_by_code

    definitions = definitions_by_code()
    custom_columns = custom_field_columns(definitions)
    fields: list[str | None] = []
    problems: list[tuple[str, str]] = []  # (column, reason)
    seen: dict[str, str] = {}
    for cell in header:
        text = "" if cell is None else str(cell).replace("\ufeff", "").strip()
        if not text:
            fields.append(None)
            continue
        field = _HEADER_TO_FIELD.get(_header_key(text)) or custom_columns.get(_header_key(text))
        if field is not None and field.startswith(COLUMN_PREFIX) and not definitions[field[len(COLUMN_PREFIX):]].active:
            problems.append((text, _("自定义字段已停用")))
            field = None
        elif field is None and _header_key(text).startswith(COLUMN_PREFIX):
            problems.append((text, _("未知的自定义字段")))
        elif field is None:
            problems.append((text, _("未知列")))
        elif field in seen:
            problems.append((text, _("与“%(other)s”列重复") % {"other": seen[field]}))
            field = None
        else:
            seen[field] = text
        fields.append(field)
    for field in REQUIRED_FIELDS:
        if field not in seen:
            problems.append((COLUMN_ALIASES[field][0], _("缺少必需的列")))
    return fields, problems


def _masked(field: str, value) -> str:
    """A rejected value as it may appear in a report: personal data masked."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        value = value.isoformat()
    text = str(value).strip()
    if not text:
        return ""
    if field == "mobile":
        return crypto.mask_mobile(normalize_mobile(text))
    if field == "id_number":
        return crypto.mask_id_number(normalize_id_number(text))
    if field == "name":
        return text[:1] + "*" * max(len(text) - 1, 1)
    if field == "birth_date":
        return text[:4] + re.sub(r"\d", "*", text[4:])
    return text[:200]


# --- running jobs ----------------------------------------------------------------------------

def _claim(job_id: int, runner: str) -> bool:
    """Take a pending job, or resume a stale one whose last attempt committed rows and that has attempts left.
    The claim is the start marker: ``attempts`` + 1 and ``attempt_rows`` are written before the file is opened."""
    now = timezone.now()
    resumable = Q(status=ImportJob.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER,
                  processed_rows__gt=F("attempt_rows"), attempts__lt=MAX_ATTEMPTS)
    return bool(
        ImportJob.objects.filter(pk=job_id)
        .filter(Q(status=ImportJob.Status.PENDING) | resumable)
        .update(status=ImportJob.Status.RUNNING, runner=runner, heartbeat_at=now, started_at=Coalesce(F("started_at"), now),
                attempts=F("attempts") + 1, attempt_rows=F("processed_rows"))
    )


def _interrupted_fail(job_id: int) -> ImportJob | None:
    """Fail, once, a job that a redelivered task finds started and unfinished although its last attempt
    committed nothing (its worker died opening the file or in the first chunk: a decompression bomb, a file
    too big for the worker's memory), or stale after ``MAX_ATTEMPTS``. Running it again would only crash
    the next worker the same way. None when the job is not in that state."""
    now = timezone.now()
    no_progress = Q(processed_rows=F("attempt_rows"))
    exhausted = Q(attempts__gte=MAX_ATTEMPTS, heartbeat_at__lt=now - STALE_AFTER)
    runner = uuid.uuid4().hex
    if not (ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).filter(no_progress | exhausted)
            .update(runner=runner, heartbeat_at=now)):
        return None
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    logger.error("import job %s interrupted after %s attempt(s), %s rows committed: failed instead of run again",
                 job.pk, job.attempts, job.processed_rows)
    if job.processed_rows == job.attempt_rows:
        message = _("处理中断：上次处理该文件时进程异常退出（可能是文件过大或已损坏，内存不足），为避免反复失败已停止。"
                    "已提交 %(rows)s 行，请检查文件或拆分后重新上传") % {"rows": f"{job.processed_rows:,}"}
    else:
        message = _("处理中断：已尝试 %(n)s 次仍未完成，为避免反复失败已停止。已提交 %(rows)s 行，请检查文件或拆分后重新上传") % {
            "n": job.attempts, "rows": f"{job.processed_rows:,}"}
    _finish(job, runner, status=ImportJob.Status.FAILED, message=message)
    job.refresh_from_db()
    return job


def _chunk_process(job: ImportJob, runner: str, fields: list, header: list[str], items: list[tuple[int, tuple]]) -> dict:
    rows, numbers = [], []
    for row_number, values in items:
        row = {field: values[i] for i, field in enumerate(fields) if field and i < len(values)}
        if any(v is not None and str(v).strip() for v in row.values()):
            rows.append(row)
            numbers.append(row_number)
    columns = {field: header[i] for i, field in enumerate(fields) if field}
    with transaction.atomic():
        if rows:
            result = customer_bulk_upsert(
                actor_label=_actor_label(job), rows=rows, dry_run=job.dry_run, actor=job.created_by, audit=False,
            )
        else:
            result = {"created": 0, "updated": 0, "unchanged": 0, "invalid": 0, "errors": []}
        ImportJobError.objects.bulk_create(
            [
                ImportJobError(
                    job_id=job.pk,
                    row_number=numbers[e["index"]],
                    external_id=e["external_id"][:64],
                    column=columns.get(e["field"], e["field"])[:100],
                    value=_masked(e["field"], rows[e["index"]].get(e["field"])),
                    reason=e["message"][:300],
                )
                for e in result["errors"]
            ],
            batch_size=1000,
        )
        moved = ImportJob.objects.filter(pk=job.pk, runner=runner, status=ImportJob.Status.RUNNING).update(
            processed_rows=F("processed_rows") + len(items),
            created_count=F("created_count") + result["created"],
            updated_count=F("updated_count") + result["updated"],
            unchanged_count=F("unchanged_count") + result["unchanged"],
            error_count=F("error_count") + result["invalid"],
            heartbeat_at=timezone.now(),
        )
        if not moved:
            raise _JobLost
    return result


def _actor_label(job: ImportJob) -> str:
    return job.created_by.username if job.created_by else "cli"


def _rows_read(job: ImportJob, runner: str, on_progress: Callable[[ImportJob], None] | None) -> None:
    path = Path(job.file.path)
    if not path.exists():
        raise _JobFailed(_("导入文件不存在"))
    with _table_open(path) as (total, rows):
        header = next(rows, None)
        if header is None:
            raise _JobFailed(_("文件是空的"))
        header = ["" if h is None else str(h).replace("\ufeff", "").strip() for h in header]
        fields, problems = import_header_map(header)
        if problems:
            with transaction.atomic():
                ImportJobError.objects.bulk_create(
                    [ImportJobError(job_id=job.pk, row_number=1, column=col[:100], reason=reason)
                     for col, reason in problems]
                )
                ImportJob.objects.filter(pk=job.pk, runner=runner).update(error_count=1)
            raise _JobFailed(_("表头有误，未导入任何数据，详见错误报告"))
        ImportJob.objects.filter(pk=job.pk, runner=runner).update(total_rows=total)
        skip = job.processed_rows  # resuming after a lost worker: these rows are committed already
        chunk: list[tuple[int, tuple]] = []
        for row_number, values in enumerate(rows, start=2):
            if row_number - 2 < skip:
                continue
            chunk.append((row_number, values))
            if len(chunk) >= CHUNK_SIZE:
                _chunk_process(job, runner, fields, header, chunk)
                chunk = []
                if on_progress:
                    job.refresh_from_db()
                    on_progress(job)
        if chunk:
            _chunk_process(job, runner, fields, header, chunk)


def _report_write(job: ImportJob) -> str:
    """The full error report, streamed from the stored (already masked) errors through core/exports.py."""
    name = f"imports/reports/job-{job.pk}-errors.csv"
    with tempfile.TemporaryFile("w+b") as tmp:
        errors = job.errors.order_by("row_number", "id").values_list("row_number", "external_id", "column", "value", "reason")
        csv_write(file=tmp, header=[_("行号"), _("客户号"), _("列"), _("值"), _("原因")],
                  rows=errors.iterator(chunk_size=5000))
        tmp.seek(0)
        default_storage.delete(name)
        return default_storage.save(name, File(tmp))


def _finish(job: ImportJob, runner: str, *, status: str, message: str = "") -> None:
    from core.services import audit_record

    job.refresh_from_db()
    report = _report_write(job) if job.errors.exists() else ""
    with transaction.atomic():
        updates = {"status": status, "message": message[:500], "finished_at": timezone.now(), "error_report": report}
        if status == ImportJob.Status.DONE:
            updates["total_rows"] = F("processed_rows")
        if not ImportJob.objects.filter(pk=job.pk, runner=runner).update(**updates):
            return
        if not job.dry_run:
            # the upload holds personal data in clear; once imported it has no further use
            transaction.on_commit(lambda: default_storage.delete(job.file.name))
        job.refresh_from_db()
        audit_record(
            actor=job.created_by, actor_label=_actor_label(job),
            action="customer.import_dry_run" if job.dry_run else "customer.import",
            target_type="import_job", target_id=str(job.pk),
            details={
                "file": job.original_name, "status": job.status, "dry_run": job.dry_run,
                "processed": job.processed_rows, "created": job.created_count, "updated": job.updated_count,
                "unchanged": job.unchanged_count, "errors": job.error_count,
            },
        )


def import_job_run(*, job_id: int, on_progress: Callable[[ImportJob], None] | None = None) -> ImportJob | None:
    """Run (or resume) a job; safe to call twice: a job already done, or running elsewhere with a
    fresh heartbeat and rows committed in its current attempt, is left alone and None is returned; a job
    whose last attempt died without committing anything is failed (see ``_interrupted_fail``)."""
    interrupted = _interrupted_fail(job_id)
    if interrupted is not None:
        return interrupted
    runner = uuid.uuid4().hex
    if not _claim(job_id, runner):
        return None
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    logger.info("import job %s started (dry_run=%s, resume_from=%s)", job.pk, job.dry_run, job.processed_rows)
    try:
        _rows_read(job, runner, on_progress)
    except _JobLost:
        logger.warning("import job %s was taken over by another runner", job.pk)
        return None
    except _JobFailed as exc:
        _finish(job, runner, status=ImportJob.Status.FAILED, message=exc.message)
    except Exception as exc:
        # no exception text: database errors quote row values, which may be personal data
        logger.error("import job %s failed: %s", job.pk, type(exc).__name__)
        _finish(job, runner, status=ImportJob.Status.FAILED,
                message=_("导入中断（%(error)s），已提交的数据保留，可重新上传继续") % {"error": type(exc).__name__})
    else:
        _finish(job, runner, status=ImportJob.Status.DONE)
    job.refresh_from_db()
    logger.info("import job %s %s: %s processed, %s created, %s updated, %s unchanged, %s error rows",
                job.pk, job.status, job.processed_rows, job.created_count, job.updated_count,
                job.unchanged_count, job.error_count)
    return job


def import_jobs_resume_stale() -> int:
    """Queue again every job left running without a heartbeat for ``STALE_AFTER``: its worker died, or its task
    ended while the database was away and could not record the failure. Each run resumes after the last committed
    chunk, or fails once when it cannot (``import_job_run``); a job still running elsewhere keeps its heartbeat fresh
    and is not touched. Returns how many were queued (beat runs this every few minutes)."""
    stale = list(ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=timezone.now() - STALE_AFTER)
                 .values_list("pk", flat=True))
    for job_id in stale:
        logger.warning("import job %s has had no heartbeat for %s: queued again", job_id, STALE_AFTER)
        _enqueue(job_id)
    return len(stale)


def import_files_purge(*, older_than: timedelta = DRY_RUN_FILE_TTL) -> int:
    """Delete uploads of dry runs nobody confirmed within ``older_than``; returns how many.
    Meant for a daily beat entry (``customers.import_files_purge``)."""
    cutoff = timezone.now() - older_than
    stale = (
        ImportJob.objects.filter(dry_run=True, created_at__lt=cutoff, confirmed_by__isnull=True)
        .exclude(status__in=[ImportJob.Status.PENDING, ImportJob.Status.RUNNING])
        .values_list("file", flat=True)
    )
    purged = 0
    for name in stale.iterator():
        if name and default_storage.exists(name):
            default_storage.delete(name)
            purged += 1
    return purged


def import_report_open(*, actor, job: ImportJob, ip_address: str | None = None):
    """Open the error report for download; the export is audited (it holds masked values only)."""
    from core.services import audit_record

    if not job.error_report:
        raise Http404
    audit_record(actor=actor, action="customer.import_report_download", target_type="import_job",
                 target_id=str(job.pk), ip_address=ip_address, details={"errors": job.error_count})
    return job.error_report.open("rb")


def import_template_header() -> list[str]:
    """The header row of the downloadable template: the first Chinese name of each field, then each active custom
    field by its name (or ``cf:<code>`` when the name is ambiguous)."""
    from customers.custom_fields import definitions_active

    columns = custom_field_columns()
    custom = []
    for definition in definitions_active():
        label_key = _header_key(definition.label)
        custom.append(definition.label if columns.get(label_key) == f"cf:{definition.code}" else f"cf:{definition.code}")
    return [COLUMN_ALIASES[field][0] for field in FIELDS] + custom
