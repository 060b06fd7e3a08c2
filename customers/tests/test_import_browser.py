"""An operator imports a CSV in Chromium: dry run with one bad row, confirm, watch it finish."""

import csv
import io

import pytest

from conftest import ARTIFACTS
from core.validators import id_number_check_digit
from customers.models import Customer, ImportJob

pytestmark = pytest.mark.browser


def csv_file() -> bytes:
    first17 = "44030419900101123"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["客户号", "姓名", "手机号", "身份证号", "营业部", "投顾工号", "风险等级"])
    writer.writerow(["WEB1", "张三", "13800138001", first17 + id_number_check_digit(first17), "BJ01", "E9001", "C3"])
    writer.writerow(["WEB2", "李四", "1380013800", "", "BJ01", "", "C2"])  # row 3: a 10-digit mobile
    writer.writerow(["WEB3", "王五", "13800138003", "", "BJ01", "E9001", "C4"])
    return out.getvalue().encode("utf-8-sig")


def test_operator_dry_runs_confirms_and_watches_the_import_finish(page, login, operator, advisor, celery_worker):
    login(operator)
    page.goto("/customers/import/")
    assert page.locator("#id_dry_run").is_checked()
    page.set_input_files("#id_file", files=[{"name": "客户.csv", "mimeType": "text/csv", "buffer": csv_file()}])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "import-upload.png"), full_page=True)
    page.click("[data-testid=import-submit]")
    page.wait_for_selector("[data-testid=import-status]")
    page.evaluate("window.sameDocument = true")  # lost if the page reloads

    # the dry run finishes while htmx polls the status card
    page.wait_for_selector("[data-testid=import-status][data-status=done]", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("[data-testid=count-created]").inner_text() == "2"
    assert page.locator("[data-testid=count-errors]").inner_text() == "1"
    bad = page.locator("[data-testid=import-errors] tbody tr")
    assert bad.count() == 1
    cells = bad.first.locator("td").all_inner_texts()
    assert cells[0] == "3" and cells[1] == "WEB2" and cells[2] == "手机号"
    assert cells[3] == "138****3800" and "手机号应为 11 位" in cells[4]
    assert page.locator("[data-testid=import-error-report]").is_visible()
    assert Customer.objects.count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "import-dry-run.png"), full_page=True)

    dry_url = page.url
    page.click("[data-testid=import-confirm]")
    page.wait_for_url(lambda url: url != dry_url)
    status = page.locator("[data-testid=import-status]")
    page.evaluate("window.sameDocument = true")
    page.wait_for_selector("[data-testid=import-status][data-status=done]", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    assert status.get_attribute("data-status") == "done"
    assert page.locator("[data-testid=import-progress]").get_attribute("aria-valuenow") == "100"
    assert page.locator("[data-testid=count-created]").inner_text() == "2"
    page.screenshot(path=str(ARTIFACTS / "import-done.png"), full_page=True)

    assert set(Customer.objects.values_list("external_id", flat=True)) == {"WEB1", "WEB3"}
    real = ImportJob.objects.get(dry_run=False)
    assert (real.status, real.created_count, real.error_count, real.created_by) == ("done", 2, 1, operator)
    for job in ImportJob.objects.all():
        job.error_report.delete(save=False)
    real.file.delete(save=False)
