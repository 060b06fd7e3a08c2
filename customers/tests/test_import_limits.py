"""Import limits: a decompression-bomb .xlsx is refused from its zip directory (before openpyxl, in little
memory), an over-size upload and an over-row-count file are refused naming the limit, and a job whose worker
died on its file fails once when the task is redelivered instead of crashing the next worker."""

import io
import tracemalloc
import zipfile

import openpyxl
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers import imports
from customers.imports import import_job_create, import_job_run
from customers.models import Customer, ImportJob
from customers.tests.test_import import ROWS, csv_bytes, xlsx_bytes

EXPANDED_MB = 300


NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PARTS = {
    "[Content_Types].xml":
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    "_rels/.rels":
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml":
        f'<workbook {NS} xmlns:r="{REL}"><sheets><sheet name="客户" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels":
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
    "xl/worksheets/sheet1.xml":
        f'<worksheet {NS}><sheetData>'
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row></sheetData></worksheet>',
}


def xlsx_with_a_huge_string(megabytes: int) -> bytes:
    """A valid .xlsx (客户号/姓名, one client) whose one name is ``megabytes`` MB of "A", written in 1 MB
    pieces with zipfile: it compresses about 1000:1."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name, text in PARTS.items():
            z.writestr(name, text)
        with z.open("xl/sharedStrings.xml", "w", force_zip64=True) as f:
            f.write(f'<sst {NS} count="4" uniqueCount="4"><si><t>客户号</t></si><si><t>姓名</t></si>'
                    '<si><t>B1</t></si><si><t>'.encode())
            chunk = b"A" * (1 << 20)
            for _ in range(megabytes):
                f.write(chunk)
            f.write(b"</t></si></sst>")
    return out.getvalue()


def test_the_bomb_is_a_real_workbook():
    """Small, the same file is read by openpyxl: unchecked, the big one would be loaded whole into memory."""
    workbook = openpyxl.load_workbook(io.BytesIO(xlsx_with_a_huge_string(1)), read_only=True)
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    assert rows[0] == ("客户号", "姓名") and rows[1][0] == "B1" and len(rows[1][1]) == 1 << 20


@pytest.fixture(scope="module")
def bomb() -> bytes:
    content = xlsx_with_a_huge_string(EXPANDED_MB)
    assert len(content) < 1_000_000  # a few hundred KB…
    with zipfile.ZipFile(io.BytesIO(content)) as z:  # …that promises hundreds of MB
        assert z.getinfo("xl/sharedStrings.xml").file_size > EXPANDED_MB * (1 << 20)
    return content


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored_files(media) -> list:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def peak_mb(call) -> tuple[object, float]:
    """(result or raised exception, tracemalloc peak in MB) of ``call()``."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - returned to the test to assert on
            result = exc
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / (1 << 20)


# --- the decompression bomb ----------------------------------------------------------------------

@pytest.mark.django_db
def test_a_zip_bomb_xlsx_is_refused_at_upload_in_little_memory_and_nothing_is_stored(bomb, media, operator):
    error, peak = peak_mb(lambda: import_job_create(actor=operator, file=ContentFile(bomb, name="客户.xlsx"),
                                                    dry_run=True, enqueue=False))
    assert isinstance(error, ApplicationError), error
    assert error.code == "import_archive_too_large"
    assert error.message.startswith("文件解压后过大") and "200 MB" in error.message  # the limit, named
    assert peak < 20, f"{peak:.1f} MB"  # openpyxl would have needed several hundred MB
    assert not ImportJob.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_the_upload_page_and_the_command_name_the_limit(bomb, media, operator, client, tmp_path):
    client.force_login(operator)
    response = client.post(reverse("customers_import:upload"), {"file": ContentFile(bomb, name="c.xlsx"), "dry_run": "on"})
    assert response.status_code == 400
    assert "文件解压后过大" in response.content.decode() and "上限为 200 MB" in response.content.decode()
    path = tmp_path / "bomb.xlsx"
    path.write_bytes(bomb)
    with pytest.raises(CommandError, match="文件解压后过大"):
        call_command("import_customers", str(path), "--dry-run")
    assert not ImportJob.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_a_bomb_already_stored_fails_its_job_before_openpyxl_opens_it(bomb, media, operator, monkeypatch):
    """A file stored before the limits existed, or under looser ones: the job checks again, first."""
    job = import_job_create(actor=operator, file=ContentFile(xlsx_bytes(ROWS), name="ok.xlsx"), dry_run=False,
                            enqueue=False)
    default_storage.delete(job.file.name)
    default_storage.save(job.file.name, ContentFile(bomb))

    def no_openpyxl(*args, **kwargs):
        raise AssertionError("openpyxl must not open a bomb")

    monkeypatch.setattr(openpyxl, "load_workbook", no_openpyxl)
    job, peak = peak_mb(lambda: import_job_run(job_id=job.pk))
    assert peak < 20, f"{peak:.1f} MB"
    assert job.status == "failed" and job.message.startswith("文件解压后过大"), job.message
    assert Customer.objects.count() == 0 and job.processed_rows == 0


@pytest.mark.django_db
def test_the_ratio_and_member_limits_catch_a_bomb_under_a_generous_total(bomb, settings, media, operator):
    settings.IMPORT_XLSX_MAX_UNCOMPRESSED_MB = settings.IMPORT_XLSX_MAX_MEMBER_MB = 10_000
    with pytest.raises(ApplicationError, match="压缩比为 [0-9,]+ 倍，上限为 100 倍"):
        import_job_create(actor=operator, file=ContentFile(bomb, name="c.xlsx"), dry_run=True, enqueue=False)
    settings.IMPORT_XLSX_MAX_MEMBER_MB = 100
    with pytest.raises(ApplicationError, match="sharedStrings.xml 解压后 [0-9.,]+ MB，单个部件上限为 100 MB"):
        import_job_create(actor=operator, file=ContentFile(bomb, name="c.xlsx"), dry_run=True, enqueue=False)
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_each_archive_limit_on_its_own(settings, media, operator):
    content = xlsx_bytes(ROWS)

    def refused() -> str:
        with pytest.raises(ApplicationError) as err:
            import_job_create(actor=operator, file=ContentFile(content, name="c.xlsx"), dry_run=True, enqueue=False)
        return err.value.message

    settings.IMPORT_XLSX_MAX_MEMBERS = 3
    assert "压缩成员" in refused() and "上限为 3 个" in refused()
    settings.IMPORT_XLSX_MAX_MEMBERS = 1000
    settings.IMPORT_XLSX_MAX_UNCOMPRESSED_MB = 0
    assert "上限为 0 MB" in refused()
    settings.IMPORT_XLSX_MAX_UNCOMPRESSED_MB = 200
    with pytest.raises(ApplicationError, match="有效的 .xlsx"):
        import_job_create(actor=operator, file=ContentFile(b"PK\x03\x04broken", name="c.xlsx"), dry_run=True,
                          enqueue=False)
    # a normal workbook passes every check and imports
    job = import_job_create(actor=operator, file=ContentFile(content, name="c.xlsx"), dry_run=True, enqueue=False)
    assert import_job_run(job_id=job.pk).status == "done"


# --- upload size and row count --------------------------------------------------------------------

@pytest.mark.django_db
def test_an_over_size_upload_is_refused_naming_the_limit(settings, media, operator, client):
    settings.IMPORT_MAX_UPLOAD_MB = 1
    big = csv_bytes([[f"S{i}", "客户" * 20, "", "", "BJ01", "", "", "", ""] for i in range(12_000)])
    assert len(big) > 1 << 20
    with pytest.raises(ApplicationError) as err:
        import_job_create(actor=operator, file=ContentFile(big, name="big.csv"), dry_run=True, enqueue=False)
    assert err.value.code == "import_file_too_large" and "上限为 1 MB" in err.value.message
    client.force_login(operator)
    page = client.get(reverse("customers_import:upload")).content.decode()
    assert "文件不超过 1 MB、200,000 行" in page
    response = client.post(reverse("customers_import:upload"), {"file": ContentFile(big, name="big.csv")})
    assert response.status_code == 400 and "上限为 1 MB" in response.content.decode()
    assert not ImportJob.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_an_over_row_count_csv_is_refused_naming_the_limit(settings, media, operator, client, advisor, tmp_path):
    settings.IMPORT_MAX_ROWS = 3
    four = csv_bytes(ROWS)
    with pytest.raises(ApplicationError) as err:
        import_job_create(actor=operator, file=ContentFile(four, name="c.csv"), dry_run=False, enqueue=False)
    assert err.value.code == "import_too_many_rows" and "超过 3 行的上限" in err.value.message
    client.force_login(operator)
    response = client.post(reverse("customers_import:upload"), {"file": ContentFile(four, name="c.csv")})
    assert response.status_code == 400 and "超过 3 行的上限" in response.content.decode()
    path = tmp_path / "c.csv"
    path.write_bytes(four)
    with pytest.raises(CommandError, match="超过 3 行的上限"):
        call_command("import_customers", str(path))
    assert not ImportJob.objects.exists() and stored_files(media) == []

    # the same limit in the job (a file accepted under a higher limit, e.g. a dry run confirmed later):
    # refused before any row is written, for CSV and for XLSX (whose rows are counted from the sheet's XML)
    settings.IMPORT_MAX_ROWS = 10
    jobs = [import_job_create(actor=operator, file=ContentFile(content, name=name), dry_run=False, enqueue=False)
            for content, name in ((four, "c.csv"), (xlsx_bytes(ROWS), "c.xlsx"))]
    settings.IMPORT_MAX_ROWS = 3
    for job in jobs:
        job = import_job_run(job_id=job.pk)
        assert job.status == "failed" and "超过 3 行的上限" in job.message, job.message
        assert job.processed_rows == 0
    assert Customer.objects.count() == 0
    settings.IMPORT_MAX_ROWS = 4  # exactly at the limit is allowed
    job = import_job_create(actor=operator, file=ContentFile(xlsx_bytes(ROWS), name="c.xlsx"), dry_run=True,
                            enqueue=False)
    job = import_job_run(job_id=job.pk)
    assert job.status == "done" and job.total_rows == 4


def test_an_xlsx_that_skips_row_numbers_cannot_outrun_the_row_limit(settings, media, operator):
    """Two <row> elements, the second numbered 5,000: openpyxl pads the rows between, so the count checked at
    upload (2) says nothing about the work; the run stops at the limit instead of reading thousands of rows."""
    parts = dict(PARTS)
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        '<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row>',
        '<row r="5000"><c r="A5000" t="s"><v>2</v></c><c r="B5000" t="s"><v>3</v></c></row>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(name, text)
        z.writestr("xl/sharedStrings.xml", f'<sst {NS} count="4" uniqueCount="4"><si><t>客户号</t></si>'
                                           '<si><t>姓名</t></si><si><t>B1</t></si><si><t>张三</t></si></sst>')
    settings.IMPORT_MAX_ROWS = 100
    job = import_job_create(actor=operator, file=ContentFile(out.getvalue(), name="gap.xlsx"), dry_run=True,
                            enqueue=False)  # two rows counted: accepted
    job = import_job_run(job_id=job.pk)
    assert job.status == "failed" and "超过 100 行的上限" in job.message, job.message
    assert job.processed_rows <= 100


# --- a poisoned job fails once ----------------------------------------------------------------------

@pytest.mark.django_db
def test_a_redelivered_job_whose_worker_died_fails_once_instead_of_running_again(media, operator, monkeypatch, client):
    from customers.tasks import import_run

    job = import_job_create(actor=operator, file=ContentFile(csv_bytes(ROWS), name="c.csv"), dry_run=False,
                            enqueue=False)
    # the first delivery claimed the job and its worker was killed while opening the file (the OOM killer):
    # the start marker is on the row, nothing was committed
    assert imports._claim(job.pk, "dead-worker")
    assert ImportJob.objects.get(pk=job.pk).attempts == 1

    opened = []
    monkeypatch.setattr(imports, "_table_open", lambda path: opened.append(path))
    assert import_run.apply(args=[job.pk]).successful()  # the redelivered message, run as a worker would
    job.refresh_from_db()
    assert job.status == "failed" and job.message.startswith("处理中断"), job.message
    assert opened == []  # the file was not opened again
    assert job.finished_at and job.runner != "dead-worker"
    client.force_login(operator)  # the job page says why
    page = client.get(reverse("customers_import:job", args=[job.pk])).content.decode()
    assert 'data-status="failed"' in page and "处理中断" in page
    assert AuditLog.objects.filter(action="customer.import", target_id=str(job.pk),
                                   details__status="failed").count() == 1

    # a third delivery finds it failed and does nothing: one failure, no loop
    assert import_job_run(job_id=job.pk) is None
    import_run.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == "failed" and job.attempts == 1 and opened == []
    assert AuditLog.objects.filter(action="customer.import", target_id=str(job.pk)).count() == 1
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_a_job_that_keeps_dying_after_progress_stops_after_its_attempts(media, operator, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    job = import_job_create(actor=operator, file=ContentFile(csv_bytes(ROWS), name="c.csv"), dry_run=False,
                            enqueue=False)
    stale = timezone.now() - imports.STALE_AFTER * 2
    # attempts used up, each died after committing a chunk: the next delivery fails it instead of a 4th run
    ImportJob.objects.filter(pk=job.pk).update(status="running", attempts=imports.MAX_ATTEMPTS, processed_rows=2,
                                              attempt_rows=0, heartbeat_at=stale)
    job = import_job_run(job_id=job.pk)
    assert job.status == "failed" and "已尝试 3 次" in job.message and job.processed_rows == 2
    # with attempts left, the same stale job resumes after its last chunk (the existing behaviour)
    again = import_job_create(actor=operator, file=ContentFile(csv_bytes(ROWS), name="c.csv"), dry_run=False,
                              enqueue=False)
    ImportJob.objects.filter(pk=again.pk).update(status="running", attempts=1, processed_rows=2, attempt_rows=0,
                                                heartbeat_at=stale)
    again = import_job_run(job_id=again.pk)
    assert again.status == "done" and again.attempts == 2 and again.processed_rows == 4
