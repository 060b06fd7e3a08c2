"""Celery tasks of the segments app: load by id, call a service, nothing else."""

from celery import shared_task


@shared_task(name="segments.rebuild", bind=True, acks_late=True)
def rebuild(self, segment_id: int, requested_by: str = "") -> str | None:
    """Rebuild one segment's stored membership (queued on create/update; a gone segment is skipped)."""
    from segments.models import Segment
    from segments.services import segment_rebuild

    try:
        return segment_rebuild(segment_id=segment_id, requested_by=requested_by).status
    except Segment.DoesNotExist:
        return None


@shared_task(name="segments.rebuild_all", bind=True, acks_late=True)
def rebuild_all(self) -> dict:
    """Every active segment, nested ones first (beat: hourly, after the tag rules)."""
    from segments.services import segments_rebuild_all

    return {str(k): v for k, v in segments_rebuild_all().items()}


@shared_task(name="segments.export_run", bind=True, acks_late=True, soft_time_limit=2 * 60 * 60,
             time_limit=2 * 60 * 60 + 120)
def export_run(self, export_id: int) -> str:
    from segments.exports import export_run as run

    return run(export_id=export_id).status


@shared_task(name="segments.action_run", bind=True, acks_late=True)
def action_run(self, action_id: int) -> str:
    from segments.services import action_run as run

    return run(action_id=action_id).status


@shared_task(name="segments.runs_interrupted_fail", bind=True, acks_late=True)
def runs_interrupted_fail(self) -> int:
    """Every 10 minutes: exports and bulk actions whose worker died mid-run are failed, visibly."""
    from segments.exports import runs_interrupted_fail as fail

    return fail()
