"""Celery tasks for WeCom sync (thin): ``wecom.sync`` runs on beat when WECOM_CORP_ID and WECOM_SECRET are set,
and on demand from /integrations/wecom/."""

from celery import shared_task

from integrations.wecom.models import SyncRun


@shared_task(name="wecom.sync", acks_late=True)
def wecom_sync(kind: str = SyncRun.Kind.ALL, requested_by: str = "beat") -> int | None:
    from integrations.wecom.client import wecom_configured
    from integrations.wecom.sync import wecom_sync_run

    if not wecom_configured():
        return None
    run = wecom_sync_run(kind=kind, requested_by=requested_by)
    return run.pk if run else None


@shared_task(name="wecom.contact_tags_push", acks_late=True)
def contact_tags_push(customer_id: int) -> dict | None:
    """One customer's synced tags to WeCom now (queued by tags_sync.customer_tag_changed_push). A WeCom error
    fails the task; the next sync does the same work."""
    from integrations.wecom.client import wecom_client, wecom_configured
    from integrations.wecom.tags_sync import customer_tags_push

    if not wecom_configured():
        return None
    return customer_tags_push(wecom_client(), customer_id=customer_id)
