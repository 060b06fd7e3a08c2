from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from core.models import User
from customers.imports import import_job_create, import_job_run


class Command(BaseCommand):
    help = "Import customers from a CSV/XLSX file, synchronously, through the same service as the upload page."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to a .csv or .xlsx file")
        parser.add_argument("--dry-run", action="store_true", help="validate and count only, write nothing")
        parser.add_argument("--actor", help="username recorded as the importer (audit log)")

    def handle(self, *args, file, dry_run, actor, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        user = None
        if actor:
            user = User.objects.filter(username=actor).first()
            if user is None:
                raise CommandError(f"no such user: {actor}")
        try:
            with path.open("rb") as f:
                job = import_job_create(actor=user, file=File(f, name=path.name), dry_run=dry_run, enqueue=False)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

        def progress(job):
            if options["verbosity"] >= 1:
                total = f"{job.total_rows:,}" if job.total_rows else "?"
                self.stderr.write(f"  {job.processed_rows:,} / {total} rows")

        job = import_job_run(job_id=job.pk, on_progress=progress)
        if job is None:
            raise CommandError("the job was not run (already running elsewhere)")
        self.stdout.write(
            f"import job {job.pk} {job.status}{' (dry run)' if job.dry_run else ''}: "
            f"{job.processed_rows:,} rows, created {job.created_count:,}, updated {job.updated_count:,}, "
            f"unchanged {job.unchanged_count:,}, rows with errors {job.error_count:,}"
        )
        if job.message:
            self.stdout.write(job.message)
        if job.error_report:
            self.stdout.write(f"error report: {job.error_report.path}")
        if job.status != job.Status.DONE:
            raise CommandError(f"import failed: {job.message}" if job.message else "import failed")
