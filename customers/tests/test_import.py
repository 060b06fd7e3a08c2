"""File import: CSV (UTF-8, BOM, GBK), XLSX, dry run, chunks, error report, pages, the Celery task."""

import csv
import datetime as dt
import io
import time

import openpyxl
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from core.crypto import decrypt
from core.models import AuditLog, Branch
from core.validators import id_number_check_digit
from customers import imports
from customers.imports import import_job_confirm, import_job_create, import_job_run
from customers.models import Customer, ImportJob, ImportJobError


def id_number(birth: str = "19850412", seq: str = "321") -> str:
    first17 = f"310101{birth}{seq}"
    return first17 + id_number_check_digit(first17)


GOOD_ID = id_number()
HEADER_ZH = ["客户号", "姓名", "手机号", "身份证号", "营业部", "投顾工号", "风险等级", "总资产", "开户日期"]
ROWS = [
    ["G1", "张三", "13800138001", GOOD_ID, "BJ01", "E9001", "C3", "1,000.50", "2021-03-04"],
    ["G2", "李四", "13800138002", "", "BJ01", "", "C5", "0", "2021/3/5"],
    ["BAD", "王五", "13800", "110101198504123210", "BJ01", "E9001", "C3", "1", "2021-03-06"],
    ["G3", "赵六", "", "", "BJ01", "", "", "", ""],
]


def csv_bytes(rows, header=HEADER_ZH, encoding="utf-8") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows, header=HEADER_ZH) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def run(content: bytes, name="客户.csv", *, dry_run=False, actor=None) -> ImportJob:
    job = import_job_create(actor=actor, file=ContentFile(content, name=name), dry_run=dry_run, enqueue=False)
    return import_job_run(job_id=job.pk)


def report_text(job: ImportJob) -> str:
    with job.error_report.open("rb") as f:
        return f.read().decode("utf-8-sig")


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path


@pytest.fixture
def world(media, advisor, operator):
    return operator


# --- reading files -----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_utf8_with_or_without_bom_and_gbk(world, encoding):
    job = run(csv_bytes(ROWS, encoding=encoding), actor=world)
    assert job.status == "done", job.message
    assert (job.total_rows, job.processed_rows, job.created_count, job.error_count) == (4, 4, 3, 1)
    g1 = Customer.objects.get(external_id="G1")
    assert (g1.name, g1.risk_level, str(g1.total_assets), g1.opened_at) == ("张三", "C3", "1000.50", dt.date(2021, 3, 4))
    assert decrypt(g1.mobile_encrypted) == "13800138001" and decrypt(g1.id_number_encrypted) == GOOD_ID
    assert g1.advisor.employee_code == "E9001"
    assert Customer.objects.get(external_id="G2").opened_at == dt.date(2021, 3, 5)
    assert not Customer.objects.filter(external_id="BAD").exists()


@pytest.mark.django_db
def test_xlsx_with_typed_cells(world):
    rows = [
        ["X1", "张三", 13800138001, GOOD_ID, "BJ01", "E9001", "C2", 1234.5, dt.datetime(2020, 1, 2)],
        ["X2", "李四", None, None, "BJ01", None, None, 0, None],
        [None] * 9,  # blank rows are skipped, not errors
        ["X3", "王五", 13800138003, None, "BJ01", None, "C9", None, dt.date(2020, 1, 3)],
    ]
    job = run(xlsx_bytes(rows), name="客户.xlsx", actor=world)
    assert job.status == "done", job.message
    assert (job.processed_rows, job.created_count, job.error_count) == (4, 2, 1)
    x1 = Customer.objects.get(external_id="X1")
    assert (decrypt(x1.mobile_encrypted), str(x1.total_assets), x1.opened_at) == ("13800138001", "1234.50", dt.date(2020, 1, 2))
    error = job.errors.get()
    assert (error.row_number, error.column, error.value) == (5, "风险等级", "C9")


@pytest.mark.django_db
def test_english_headers_and_header_spellings(world):
    header = ["External ID", "name*", "Mobile", "branch", "risk_level", "客户经理工号", ""]
    content = csv_bytes([["E1", "张三", "13800138001", "BJ01", "C1", "E9001", "ignored"]], header=header)
    job = run(content, actor=world)
    assert job.status == "done", job.message
    assert Customer.objects.get(external_id="E1").advisor.employee_code == "E9001"


@pytest.mark.django_db
def test_unknown_or_missing_columns_fail_the_job_before_any_write(world):
    job = run(csv_bytes([["H1", "13800138001"]], header=["客户号", "微信号"]), actor=world)
    assert job.status == "failed"
    assert Customer.objects.count() == 0
    problems = sorted((e.row_number, e.column, e.reason) for e in job.errors.all())
    assert problems == [(1, "姓名", "缺少必需的列"), (1, "微信号", "未知列")]
    assert "未知列" in report_text(job)


@pytest.mark.django_db
def test_old_xls_and_other_suffixes_are_refused(world):
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError):
        import_job_create(actor=world, file=ContentFile(b"x", name="a.txt"), dry_run=True, enqueue=False)
    job = run(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, name="old.csv", actor=world)
    assert job.status == "failed" and ".xls" in job.message


# --- dry run, report, chunks ---------------------------------------------------------------------

@pytest.mark.django_db
def test_dry_run_reports_counts_and_errors_but_writes_nothing(world):
    Customer.objects.create(external_id="G2", name="李四", branch=Branch.objects.get(code="BJ01"), risk_level="C5")
    job = run(csv_bytes(ROWS), dry_run=True, actor=world)
    assert job.status == "done"
    assert (job.created_count, job.updated_count, job.error_count) == (2, 1, 1)
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"G2"}
    assert Customer.objects.get(external_id="G2").mobile_hash == ""
    assert job.errors.count() == 2  # the bad row's mobile and ID number
    assert AuditLog.objects.filter(action="customer.import_dry_run", target_id=str(job.pk)).exists()
    assert not AuditLog.objects.filter(action="customer.import").exists()


@pytest.mark.django_db
def test_error_report_has_row_column_value_reason_and_masks_personal_data(world):
    rows = [
        ["OK1", "张三", "13800138001", "", "BJ01", "", "", "", ""],
        ["E1", "欧阳娜娜", "1391234567", "", "BJ01", "", "", "", ""],
        ["E2", "李四", "", "310101198504123210", "BJ01", "", "", "", "2021-02-30"],
        ["E3", "王" * 60, "", "", "NOPE", "", "", "", ""],
        ["=2+3", "李四", "", "", "@SUM(A1)", "", "", "", ""],
    ]
    job = run(csv_bytes(rows), actor=world)
    text = report_text(job)
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["行号", "客户号", "列", "值", "原因"]
    body = {(r[0], r[2]): (r[1], r[3], r[4]) for r in lines[1:]}
    assert body[("3", "手机号")] == ("E1", "139****4567", "手机号应为 11 位中国大陆手机号")
    assert body[("4", "身份证号")] == ("E2", "**************3210", "身份证号校验位错误")
    assert body[("4", "开户日期")][2] == "日期格式应为 YYYY-MM-DD"
    assert body[("5", "姓名")][1] == "王" + "*" * 59
    assert body[("5", "营业部")] == ("E3", "NOPE", "营业部代码不存在")
    assert body[("6", "营业部")] == ("'=2+3", "'@SUM(A1)", "营业部代码不存在")  # no formulas for Excel to run
    for secret in ("1391234567", "310101198504123210", "王" * 60):
        assert secret not in text
    assert job.error_count == 4 and job.created_count == 1


@pytest.mark.django_db
def test_chunks_commit_independently_and_a_rerun_is_unchanged(world, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    rows = [[f"C{i}", "客户", "", "", "BJ01", "", "", str(i), ""] for i in range(7)]
    rows[3][6] = "C0"
    job = run(csv_bytes(rows), actor=world)
    assert (job.processed_rows, job.created_count, job.error_count) == (7, 6, 1)
    assert job.errors.get().row_number == 5
    again = run(csv_bytes(rows), actor=world)
    assert (again.created_count, again.updated_count, again.unchanged_count) == (0, 0, 6)


@pytest.mark.django_db
def test_a_job_runs_once_and_a_stale_one_resumes_after_its_last_chunk(world, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    rows = [[f"R{i}", "客户", "", "", "BJ01", "", "", "", ""] for i in range(5)]
    job = import_job_create(actor=world, file=ContentFile(csv_bytes(rows), name="r.csv"), dry_run=False, enqueue=False)
    # a worker died after committing the first chunk (rows 2–3)
    ImportJob.objects.filter(pk=job.pk).update(status="running", processed_rows=2, created_count=2,
                                              heartbeat_at=timezone.now())
    assert import_job_run(job_id=job.pk) is None  # fresh heartbeat: someone else is on it
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - imports.STALE_AFTER * 2)
    job = import_job_run(job_id=job.pk)
    assert (job.status, job.processed_rows, job.created_count) == ("done", 5, 5)
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["R2", "R3", "R4"]  # R0, R1 were "committed"
    assert import_job_run(job_id=job.pk) is None  # done stays done


@pytest.mark.django_db
def test_confirm_starts_the_real_import_of_the_same_file_once(world):
    dry = run(csv_bytes(ROWS), dry_run=True, actor=world)
    real = import_job_confirm(actor=world, job=dry, enqueue=False)
    assert import_job_confirm(actor=world, job=dry, enqueue=False) == real
    assert (real.dry_run, real.file.name, real.source_job_id) == (False, dry.file.name, dry.pk)
    real = import_job_run(job_id=real.pk)
    assert (real.created_count, real.error_count) == (dry.created_count, dry.error_count)
    assert Customer.objects.count() == 3


@pytest.mark.django_db
def test_management_command(world, tmp_path, capsys):
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_bytes(ROWS, encoding="gbk"))
    call_command("import_customers", str(path), "--dry-run", "--actor", world.username)
    out = capsys.readouterr().out
    assert "created 3" in out and "rows with errors 1" in out and "error report:" in out
    assert Customer.objects.count() == 0
    call_command("import_customers", str(path))
    assert Customer.objects.count() == 3


# --- pages -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_who_may_import(client, world, make_staff, advisor, branch_manager, admin_user):
    job = run(csv_bytes(ROWS), dry_run=True, actor=world)
    other_operator = make_staff("operator_b", "operator")
    job_url = reverse("customers_import:job", args=[job.pk])
    for user, form_status, job_status in [
        (advisor, 404, 404), (branch_manager, 404, 404), (other_operator, 200, 404), (world, 200, 200), (admin_user, 200, 200),
    ]:
        client.force_login(user)
        assert client.get(reverse("customers_import:upload")).status_code == form_status, user
        assert client.get(job_url).status_code == job_status, user
        assert client.get(reverse("customers_import:errors", args=[job.pk])).status_code == job_status, user
        assert client.post(reverse("customers_import:confirm", args=[job.pk])).status_code in (
            (302,) if job_status == 200 else (404,))


@pytest.mark.django_db
def test_upload_creates_a_job_whose_page_polls_then_shows_the_result(client, world, django_capture_on_commit_callbacks):
    client.force_login(world)
    page = client.get(reverse("customers_import:upload"))
    assert "客户导入" in page.content.decode() and 'name="dry_run" id="id_dry_run" checked' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("customers_import:upload"),
                               {"file": ContentFile(csv_bytes(ROWS), name="c.csv"), "dry_run": "on"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("customers_import:job", args=[job.pk])
    assert len(callbacks) == 1 and job.dry_run and job.created_by == world

    pending = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 1s"' in pending and 'data-status="pending"' in pending
    import_job_run(job_id=job.pk)
    partial = client.get(response["Location"], headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and "hx-trigger" not in partial and 'data-status="done"' in partial
    assert 'data-row="4"' in partial and "139" not in partial.split('data-row="4"')[1][:80]
    assert "确认导入" in partial and reverse("customers_import:errors", args=[job.pk]) in partial

    report = client.get(reverse("customers_import:errors", args=[job.pk]))
    assert report.status_code == 200 and "13800" not in b"".join(report.streaming_content).decode("utf-8-sig")
    assert AuditLog.objects.filter(action="customer.import_report_download").count() == 1

    with django_capture_on_commit_callbacks(execute=False):
        confirmed = client.post(reverse("customers_import:confirm", args=[job.pk]))
    real = ImportJob.objects.get(source_job=job)
    assert confirmed["Location"] == reverse("customers_import:job", args=[real.pk]) and not real.dry_run


@pytest.mark.django_db
def test_upload_rejects_other_files(client, world):
    client.force_login(world)
    response = client.post(reverse("customers_import:upload"), {"file": ContentFile(b"abc", name="c.pdf")})
    assert response.status_code == 400 and "只支持 CSV 或 XLSX" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_template_download_has_the_chinese_header(client, world):
    client.force_login(world)
    content = client.get(reverse("customers_import:template")).content.decode("utf-8-sig")
    assert content.startswith("客户号,姓名,手机号,身份证号")


# --- through the real Celery worker -----------------------------------------------------------

def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True)
def test_upload_is_run_by_the_celery_worker_after_commit(celery_worker, make_staff):
    # the worker reads the file from the default MEDIA_ROOT, so no tmp media here
    operator = make_staff("operator_w", "operator")
    make_staff("advisor_w", "advisor", "BJ01", employee_code="E9001")
    job = import_job_create(actor=operator, file=ContentFile(csv_bytes(ROWS), name="w.csv"), dry_run=False)
    done = wait_for(lambda: ImportJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).first())
    assert done.status == "done", done.message
    assert (done.processed_rows, done.created_count, done.error_count) == (4, 3, 1)
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"G1", "G2", "G3"}
    assert ImportJobError.objects.filter(job=done, row_number=4).exists()
    assert AuditLog.objects.filter(action="customer.import", target_id=str(job.pk), actor=operator).exists()
    done.file.delete(save=False)
    done.error_report.delete(save=False)


@pytest.mark.django_db(transaction=True)
def test_an_import_left_running_by_a_dead_worker_is_resumed_by_the_sweep(celery_worker, make_staff):
    from customers.imports import import_jobs_resume_stale

    operator = make_staff("operator_s", "operator")
    rows = [[f"S{i}", "客户", "", "", "BJ01", "", "", "", ""] for i in range(5)]
    make_staff("advisor_s", "advisor", "BJ01")
    job = import_job_create(actor=operator, file=ContentFile(csv_bytes(rows), name="s.csv"), dry_run=False,
                            enqueue=False)
    # its worker committed two rows, then died (or its task ended while PostgreSQL was away): no message is left
    ImportJob.objects.filter(pk=job.pk).update(status="running", processed_rows=2, created_count=2, attempts=1,
                                              heartbeat_at=timezone.now())
    assert import_jobs_resume_stale() == 0  # a fresh heartbeat: someone is on it
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - imports.STALE_AFTER * 2)
    assert import_jobs_resume_stale() == 1
    done = wait_for(lambda: ImportJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).first())
    assert (done.status, done.processed_rows, done.created_count) == ("done", 5, 5), done.message
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["S2", "S3", "S4"]
    done.file.delete(save=False)


@pytest.mark.django_db(transaction=True)
def test_uploads_with_clear_personal_data_do_not_linger(media, advisor, operator):
    from core.errors import ApplicationError
    from customers.imports import import_files_purge

    dry = run(csv_bytes(ROWS), dry_run=True, actor=operator)
    assert default_storage.exists(dry.file.name)  # kept for 确认导入
    real = import_job_run(job_id=import_job_confirm(actor=operator, job=dry, enqueue=False).pk)
    assert real.status == "done" and not default_storage.exists(real.file.name)

    forgotten = run(csv_bytes(ROWS), dry_run=True, actor=operator)
    assert import_files_purge() == 0
    ImportJob.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - imports.DRY_RUN_FILE_TTL * 2)
    assert import_files_purge() == 1
    assert not default_storage.exists(forgotten.file.name)
    with pytest.raises(ApplicationError, match="重新上传"):
        import_job_confirm(actor=operator, job=forgotten, enqueue=False)
