"""Celery tasks of the customers app: load by id, call a service, nothing else."""

from celery import shared_task

from customers.imports import import_files_purge, import_job_run, import_jobs_resume_stale

IMPORT_SOFT_TIME_LIMIT = 6 * 60 * 60  # a million-row file takes minutes; leave room for slow disks


@shared_task(
    name="customers.import_run", bind=True, acks_late=True,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT, time_limit=IMPORT_SOFT_TIME_LIMIT + 120,
)
def import_run(self, job_id: int) -> None:
    """Run one import job; a redelivered message finds the job done or running and returns, or — when the
    worker it was on died before committing anything (e.g. a file too big for memory) — fails it once
    ("处理中断…") instead of running the same file again (customers.imports._interrupted_fail)."""
    import_job_run(job_id=job_id)


@shared_task(name="customers.import_files_purge", bind=True, acks_late=True)
def import_files_purge_run(self) -> int:
    """Daily: remove uploads of dry runs that were never confirmed."""
    return import_files_purge()


@shared_task(name="customers.import_resume_stale", bind=True, acks_late=True)
def import_resume_stale_run(self) -> int:
    """Every few minutes: queue again imports whose worker or database went away mid-run."""
    return import_jobs_resume_stale()
