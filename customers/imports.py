"""Customer file import (CSV/XLSX) on top of ``customers.bulk.customer_bulk_upsert``.

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
=================  ==========================================================

An unknown or repeated column, or a missing 客户号/姓名 column, fails the job before any row
is read: a misspelt "手机" column must not be dropped silently.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import enum
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from core import crypto
from core.errors import ApplicationError
from core.models import Role
from core.validators import normalize_id_number, normalize_mobile
from customers.bulk import FIELDS, REQUIRED_FIELDS, customer_bulk_upsert
from customers.models import ImportJob, ImportJobError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
STALE_AFTER = timedelta(minutes=10)  # a running job without a heartbeat for this long may be taken over
ALLOWED_SUFFIXES = (".csv", ".xlsx")
IMPORT_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})
DRY_RUN_FILE_TTL = timedelta(days=1)  # an unconfirmed dry run's upload (clear personal data) is purged after this


class ImportErrorCode(enum.StrEnum):
    UNSUPPORTED_FILE = "import_unsupported_file"
    EMPTY_FILE = "import_empty_file"
    NOT_CONFIRMABLE = "import_not_confirmable"
    FILE_GONE = "import_file_gone"


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


# --- access ----------------------------------------------------------------------------------

def import_allowed(user) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and getattr(user, "role", None) in IMPORT_ROLES


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

def _file_kind(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise _JobFailed(_("不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV"))
    return "csv"


def _csv_probe(path: Path) -> tuple[str, str, int]:
    """(encoding, delimiter, number of records incl. header): one streaming pass."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            with path.open(encoding=encoding, newline="") as f:
                first = f.readline()
                delimiter = "\t" if "\t" in first and "," not in first else ","
                f.seek(0)
                count = sum(1 for _row in csv.reader(f, delimiter=delimiter))
            return encoding, delimiter, count
        except UnicodeDecodeError:
            continue
    raise _JobFailed(_("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV"))


@contextlib.contextmanager
def _table_open(path: Path) -> Iterator[tuple[int, Iterator]]:
    """(estimated data rows, iterator of row tuples starting with the header)."""
    if _file_kind(path) == "xlsx":
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - any parse failure means the same to the user
            raise _JobFailed(_("无法读取 Excel 文件，请确认是有效的 .xlsx 文件")) from None
        try:
            sheet = workbook.worksheets[0]
            max_row = sheet.max_row or 0  # from the sheet's dimension tag; 0 when the writer left it out
            yield max(max_row - 1, 0), sheet.iter_rows(values_only=True)
        finally:
            workbook.close()
    else:
        encoding, delimiter, count = _csv_probe(path)
        with path.open(encoding=encoding, newline="") as f:
            yield max(count - 1, 0), csv.reader(f, delimiter=delimiter)


def import_header_map(header) -> tuple[list[str | None], list[tuple[str, str]]]:
    """Field per column (None = blank header, ignored) and header problems as (column, reason)."""
    fields: list[str | None] = []
    problems: list[tuple[str, str]] = []  # (column, reason)
    seen: dict[str, str] = {}
    for cell in header:
        text = "" if cell is None else str(cell).replace("\ufeff", "").strip()
        if not text:
            fields.append(None)
            continue
        field = _HEADER_TO_FIELD.get(_header_key(text))
        if field is None:
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
    now = timezone.now()
    return bool(
        ImportJob.objects.filter(pk=job_id)
        .filter(Q(status=ImportJob.Status.PENDING) | Q(status=ImportJob.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER))
        .update(status=ImportJob.Status.RUNNING, runner=runner, heartbeat_at=now, started_at=Coalesce(F("started_at"), now))
    )


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


def _csv_safe(cell):
    """Neutralise spreadsheet formulas in echoed file content (CSV injection)."""
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def _report_write(job: ImportJob) -> str:
    """The full error report (UTF-8 with BOM so Excel opens it), streamed from the stored errors."""
    name = f"imports/reports/job-{job.pk}-errors.csv"
    with tempfile.TemporaryFile("w+b") as tmp:
        text = codecs.getwriter("utf-8")(tmp)
        text.write("\ufeff")
        writer = csv.writer(text)
        writer.writerow([_("行号"), _("客户号"), _("列"), _("值"), _("原因")])
        errors = job.errors.order_by("row_number", "id").values_list("row_number", "external_id", "column", "value", "reason")
        for row in errors.iterator(chunk_size=5000):
            writer.writerow([_csv_safe(cell) for cell in row])
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
    fresh heartbeat, is left alone and None is returned."""
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
    """The header row of the downloadable template: the first Chinese name of each field."""
    return [COLUMN_ALIASES[field][0] for field in FIELDS]
