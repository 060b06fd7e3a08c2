from datetime import date

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from tagging.tiers import tier_run_compute


class Command(BaseCommand):
    help = "Recompute every customer's RFM value tier now (the same run the nightly Celery beat entry starts)."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", type=date.fromisoformat, default=None,
                            help="reference date YYYY-MM-DD in Asia/Shanghai (default: today)")

    def handle(self, *args, as_of: date | None, **options):
        try:
            run = tier_run_compute(as_of=as_of, requested_by="command")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"run {run.pk}: as of {run.as_of}, window {run.window_days} days, method {run.method}")
        self.stdout.write(f"thresholds: R < {run.threshold_r} days, F > {run.threshold_f}, M > {run.threshold_m}")
        for code, n in sorted(run.counts.items(), key=lambda item: -item[1]):
            self.stdout.write(f"  {code:<24} {n:>10,}")
        self.stdout.write(self.style.SUCCESS(f"{run.changed:,} tier changes in {run.duration_ms / 1000:.1f} s"))
