from celery import chain
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Queue the demo's first WeCom sync from the sandbox, then the community-group demo data that needs "
            "the synced groups (purposes, audience segments, 30 days of health), then the three demo SOP journeys "
            "with two weeks of replayed history (sop.demo). `make run` calls it.")

    def add_arguments(self, parser):
        parser.add_argument("--countdown", type=int, default=15, help="start after N seconds (the sandbox and "
                                                                       "the worker are starting)")

    def handle(self, *args, countdown, **options):
        from groups.tasks import demo_seed
        from integrations.wecom.tasks_sync import wecom_sync
        from sop.tasks import demo_seed as sop_demo_seed

        chain(wecom_sync.si("all", "make run"), demo_seed.si(), sop_demo_seed.si()).apply_async(
            countdown=max(0, countdown))
        self.stdout.write(f"WeCom sync, group demo and SOP demo journeys queued to start in {countdown} s")
