"""Writing a segment's members (or one snapshot's) to CSV or XLSX, in the Celery task
``segments.export_run``: members within the exporter's scope, read in keyset batches, progress in
``written``/``total``, mobile masked unless the exporter's scope allows personal data. The file is kept
under MEDIA_ROOT (segment_exports/YYYY/MM/) for the exporter to download
(segments.services.export_file_for_user); the export itself is audited as "segment.export".
The rows are masked here; the files are written by core/exports.py (which neutralises formulas). The active custom
fields follow the fixed columns, one column each, headed by the field's name (customers/custom_fields.py writes the
values in words: a multiple choice as "a、b").
"""

import logging
import tempfile
from datetime import timedelta

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from core.crypto import decrypt
from core.exports import csv_write, xlsx_write
from core.services import audit_record
from segments.models import SegmentAction, SegmentExport

logger = logging.getLogger(__name__)

# longer than an export task may run (segments.tasks.export_run's time limit): still "running" after this, its
# worker died mid-run, and a redelivered task cannot finish it (it only claims pending rows)
STALE_RUN_AFTER = timedelta(hours=3)
INTERRUPTED = "处理中断：执行它的进程意外退出，请重新发起"

BATCH_SIZE = 2000
COLUMNS = ["客户号", "姓名", "手机号", "营业部", "投顾", "风险等级", "分层", "总资产"]


def export_filename(export: SegmentExport) -> str:
    day = timezone.localtime(export.created_at).strftime("%Y%m%d") if export.created_at else ""
    return f"{export.segment.name}-{day}-{export.pk}.{export.format}"


def _members(export: SegmentExport):
    from segments.selectors import segment_members, snapshot_members
    from tagging.tiers import annotate_tier

    if export.snapshot_id:
        qs = snapshot_members(export.snapshot, principal=export.created_by)
    else:
        qs = segment_members(export.segment, principal=export.created_by)
    return annotate_tier(qs.select_related("branch", "advisor")).order_by("pk")


def export_header(definitions) -> list[str]:
    return COLUMNS + [d.label for d in definitions]


def _rows(export: SegmentExport, progress, definitions=()):
    """Rows in pk order, BATCH_SIZE at a time (keyset: no OFFSET, no long-held cursor)."""
    from customers.custom_fields import value_text

    qs = _members(export)
    last = 0
    while True:
        batch = list(qs.filter(pk__gt=last)[:BATCH_SIZE])
        if not batch:
            return
        for c in batch:
            mobile = c.mobile_masked if export.masked else decrypt(c.mobile_encrypted)
            advisor = (c.advisor.display_name or c.advisor.username) if c.advisor else ""
            custom = c.custom_fields or {}
            yield [c.external_id, c.name, mobile, c.branch.name, advisor,
                   c.get_risk_level_display() if c.risk_level else "", c.tier_label or "", c.total_assets,
                   *(value_text(d, custom.get(d.code)) for d in definitions)]
        last = batch[-1].pk
        progress(len(batch))


def export_run(*, export_id: int) -> SegmentExport:
    """Run a pending export (a second delivery of the same task finds it claimed and returns)."""
    claimed = SegmentExport.objects.filter(pk=export_id, status=SegmentExport.Status.PENDING).update(
        status=SegmentExport.Status.RUNNING, written=0)
    export = SegmentExport.objects.select_related("segment", "snapshot", "created_by").get(pk=export_id)
    if not claimed:
        return export
    try:
        total = _members(export).count()
        SegmentExport.objects.filter(pk=export.pk).update(total=total)
        written = 0

        def progress(n):
            nonlocal written
            written += n
            SegmentExport.objects.filter(pk=export.pk).update(written=written)

        from customers.custom_fields import definitions_active

        definitions = definitions_active()
        header, rows = export_header(definitions), _rows(export, progress, definitions)
        with tempfile.TemporaryFile("w+b") as tmp:
            if export.format == SegmentExport.Format.XLSX:
                xlsx_write(file=tmp, header=header, rows=rows, sheet_title="客群成员")
            else:
                csv_write(file=tmp, header=header, rows=rows)
            tmp.seek(0)
            export.file.save(f"segment-{export.segment_id}-export-{export.pk}.{export.format}", File(tmp), save=False)
        with transaction.atomic():
            SegmentExport.objects.filter(pk=export.pk).update(
                status=SegmentExport.Status.DONE, file=export.file.name, written=written,
                total=max(total, written), finished_at=timezone.now())
            audit_record(actor=export.created_by, action="segment.export", target_type="segment",
                         target_id=export.segment_id,
                         details={"export": export.pk, "count": written, "masked": export.masked,
                                  "format": export.format, "snapshot": export.snapshot_id})
    except Exception as exc:
        logger.exception("segment export %s failed", export_id)
        SegmentExport.objects.filter(pk=export.pk).update(status=SegmentExport.Status.FAILED, error=str(exc)[:4000],
                                                          finished_at=timezone.now())
    export.refresh_from_db()
    return export


def runs_interrupted_fail() -> int:
    """Exports and bulk actions left "running" by a worker that died: failed, visibly, so the user starts them
    again instead of waiting on a spinner forever. Returns how many (beat runs this every 10 minutes)."""
    now = timezone.now()
    failed = 0
    for model in (SegmentExport, SegmentAction):
        stale = model.objects.filter(status=model.Status.RUNNING, created_at__lt=now - STALE_RUN_AFTER)
        for pk in stale.values_list("pk", flat=True):
            logger.error("segment %s %s still running after %s: failed as interrupted", model._meta.model_name, pk,
                         STALE_RUN_AFTER)
        failed += stale.update(status=model.Status.FAILED, error=INTERRUPTED, finished_at=now)
    return failed
