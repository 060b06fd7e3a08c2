"""Exports run in the real Celery worker: scoped members, masking by role, progress, audit, download."""

import csv
import io
import time
from decimal import Decimal

import pytest
from django.http import Http404
from openpyxl import load_workbook

from core.errors import ApplicationError
from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from segments.models import Segment, SegmentExport
from segments.services import export_file_for_user, export_start, segment_create, snapshot_create

RICH = {"op": "and", "rules": [{"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]}
HEADER = ["客户号", "姓名", "手机号", "营业部", "投顾", "风险等级", "分层", "总资产"]


def wait_for(predicate, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def finished(export):
    return wait_for(lambda: SegmentExport.objects.filter(pk=export.pk, status__in=["done", "failed"]).first())


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.django_db(transaction=True)
def test_exports_through_the_worker_mask_by_role_and_are_audited(celery_worker, operator, branch_manager, advisor,
                                                                  other_branch_advisor):
    CustomerFactory(advisor=advisor, external_id="BJ-1", name="北京甲", mobile="13800138001",
                    total_assets=Decimal("2000000"), risk_level="C4")
    CustomerFactory(advisor=advisor, external_id="BJ-2", name="=HYPERLINK(1)", mobile="13800138002",
                    total_assets=Decimal("1200000"))
    CustomerFactory(advisor=other_branch_advisor, external_id="SH-1", name="上海乙", mobile="13900139003",
                    total_assets=Decimal("5000000"))
    CustomerFactory(advisor=advisor, external_id="BJ-3", mobile="13700137004", total_assets=Decimal("10"))
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    # the rebuild queued on commit runs in the worker
    wait_for(lambda: Segment.objects.filter(pk=segment.pk, rebuilt_at__isnull=False).exists())

    # a branch manager may see personal data: clear mobiles, only their branch's members, CSV with BOM
    mine = finished(export_start(actor=branch_manager, segment=segment, format="csv"))
    assert mine.status == "done", mine.error
    assert (mine.masked, mine.total, mine.written, mine.progress) == (False, 2, 2, 100)
    response = export_file_for_user(branch_manager, mine.pk)
    raw = body(response)
    assert raw.startswith(b"\xef\xbb\xbf") and "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {"BJ-1", "BJ-2"}
    assert by_id["BJ-1"][1:4] == ["北京甲", "13800138001", "BJ01 营业部"]
    assert by_id["BJ-1"][4] == "advisor_a" and by_id["BJ-1"][5].startswith("C4")
    assert Decimal(by_id["BJ-1"][7]) == Decimal("2000000")
    assert by_id["BJ-2"][1] == "'=HYPERLINK(1)"  # no formula injection
    audit = AuditLog.objects.get(action="segment.export", actor=branch_manager)
    assert audit.details["count"] == 2 and audit.details["masked"] is False
    assert AuditLog.objects.filter(action="segment.export_download", actor=branch_manager).count() == 1

    # an operator may not see personal data: masked mobiles, everyone, XLSX
    snapshot = snapshot_create(actor=operator, segment=segment, name="冻结")
    theirs = finished(export_start(actor=operator, segment=segment, snapshot=snapshot, format="xlsx"))
    assert theirs.status == "done", theirs.error
    assert theirs.masked and theirs.written == 3
    sheet = load_workbook(io.BytesIO(body(export_file_for_user(operator, theirs.pk))), read_only=True).active
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert values[0] == HEADER
    mobiles = {r[0]: r[2] for r in values[1:]}
    assert mobiles == {"BJ-1": "138****8001", "BJ-2": "138****8002", "SH-1": "139****9003"}
    assert AuditLog.objects.get(action="segment.export", actor=operator).details["count"] == 3

    # nobody else downloads an export
    for intruder in (branch_manager, advisor):
        with pytest.raises(Http404):
            export_file_for_user(intruder, theirs.pk)
    for export in (mine, theirs):
        export.refresh_from_db()
        export.file.delete(save=False)


@pytest.mark.django_db
def test_export_refuses_bad_format_and_foreign_snapshot(operator):
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    other = segment_create(actor=operator, name="另一个", rule=RICH)
    with pytest.raises(ApplicationError) as err:
        export_start(actor=operator, segment=segment, format="pdf")
    assert err.value.details[0]["field"] == "format"
    with pytest.raises(ApplicationError) as err:
        export_start(actor=operator, segment=segment, snapshot=snapshot_create(actor=operator, segment=other, name="x"))
    assert err.value.details[0]["field"] == "snapshot"
    assert not SegmentExport.objects.exists()
    with pytest.raises(Http404):  # pending / unknown exports have no file
        export_file_for_user(operator, 12345)


@pytest.mark.django_db
def test_an_export_or_action_whose_worker_died_is_failed_visibly_not_left_running(operator):
    from datetime import timedelta

    from django.utils import timezone

    from segments import exports
    from segments.models import SegmentAction

    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    dead = SegmentExport.objects.create(segment=segment, created_by=operator, status="running")
    busy = SegmentExport.objects.create(segment=segment, created_by=operator, status="running")
    action = SegmentAction.objects.create(segment=segment, kind="tag_add", params={"tag": "margin_intent"},
                                          created_by=operator, status="running")
    long_ago = timezone.now() - exports.STALE_RUN_AFTER - timedelta(minutes=1)
    SegmentExport.objects.filter(pk=dead.pk).update(created_at=long_ago)
    SegmentAction.objects.filter(pk=action.pk).update(created_at=long_ago)
    assert exports.runs_interrupted_fail() == 2
    dead.refresh_from_db(), busy.refresh_from_db(), action.refresh_from_db()
    assert (dead.status, action.status, busy.status) == ("failed", "failed", "running")
    assert "重新发起" in dead.error and dead.finished_at is not None
    assert exports.runs_interrupted_fail() == 0
