from django.core.management.base import BaseCommand, CommandError

from integrations.wecom.models import SyncRun


class Command(BaseCommand):
    help = ("Sync with WeCom now (or --enqueue it for a Celery worker, e.g. the first sync after `make run` starts "
            "the sandbox). Kinds: all, contacts, tags, groups.")

    def add_arguments(self, parser):
        parser.add_argument("--kind", default=SyncRun.Kind.ALL, choices=SyncRun.Kind.values)
        parser.add_argument("--enqueue", action="store_true", help="queue the Celery task instead of running here")
        parser.add_argument("--countdown", type=int, default=0, help="with --enqueue: start after N seconds")

    def handle(self, *args, kind, enqueue, countdown, **options):
        from integrations.wecom.client import wecom_configured
        from integrations.wecom.sync import wecom_sync_run
        from integrations.wecom.tasks_sync import wecom_sync

        if not wecom_configured():
            raise CommandError("WECOM_CORP_ID and WECOM_SECRET are not set")
        if enqueue:
            wecom_sync.apply_async(args=[kind, "manage.py wecom_sync"], countdown=max(0, countdown))
            self.stdout.write(f"WeCom sync ({kind}) queued" + (f" to start in {countdown} s" if countdown else ""))
            return
        run = wecom_sync_run(kind=kind, requested_by="manage.py wecom_sync")
        if run is None:
            raise CommandError("another WeCom sync is running")
        self.stdout.write(f"WeCom sync {run.pk}: {run.status} {run.counts} {run.error}")
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(run.error)
