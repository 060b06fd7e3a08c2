"""Customer import pages: upload, job progress/result (polled by htmx), error report download."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from core.exports import export_response, file_response
from customers import imports
from customers.ingest import FIELDS
from customers.models import ImportJob

ERRORS_SHOWN = 20


@login_required
def import_upload(request):
    if not imports.import_allowed(request.user):
        raise Http404  # like every other page a role may not open: it does not exist for them
    error = ""
    dry_run = True
    if request.method == "POST":
        dry_run = request.POST.get("dry_run") == "on"
        upload = request.FILES.get("file")
        if upload is None:
            error = _("请选择要导入的文件")
        else:
            try:
                job = imports.import_job_create(actor=request.user, file=upload, dry_run=dry_run)
            except ApplicationError as exc:
                error = exc.message
            else:
                return redirect("customers_import:job", job_id=job.pk)
    context = {
        "error": error,
        "dry_run": dry_run,
        "jobs": imports.import_job_list_for_user(user=request.user),
        "columns": [(field, imports.COLUMN_ALIASES[field]) for field in FIELDS],
        "chunk_size": imports.CHUNK_SIZE,
        "limits": imports.import_limits(),
    }
    return render(request, "customers/import_upload.html", context, status=400 if error else 200)


@never_cache
@login_required
def import_job_detail(request, job_id: int):
    job = imports.import_job_get_for_user(user=request.user, job_id=job_id)
    context = {
        "job": job,
        "errors": imports.import_job_errors_first(job=job, limit=ERRORS_SHOWN) if job.finished else [],
        "errors_shown": ERRORS_SHOWN,
        "confirmed_job": ImportJob.objects.filter(source_job=job).first() if job.dry_run else None,
    }
    template = "customers/import_job_status.html" if request.htmx else "customers/import_job.html"
    return render(request, template, context)


@require_POST
@login_required
def import_job_confirm(request, job_id: int):
    job = imports.import_job_get_for_user(user=request.user, job_id=job_id)
    try:
        real = imports.import_job_confirm(actor=request.user, job=job)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("customers_import:job", job_id=job.pk)
    return redirect("customers_import:job", job_id=real.pk)


@login_required
def import_errors_csv(request, job_id: int):
    job = imports.import_job_get_for_user(user=request.user, job_id=job_id)
    # the report was written by core/exports.py; import_report_open records the download in the audit log
    report = imports.import_report_open(actor=request.user, job=job, ip_address=request.META.get("REMOTE_ADDR"))
    return file_response(file=report, filename=f"import-{job.pk}-errors.csv", audit=None)


@login_required
def import_template_csv(request):
    if not imports.import_allowed(request.user):
        raise Http404  # like every other page a role may not open: it does not exist for them
    return export_response(filename="customer-import-template.csv", header=imports.import_template_header(),
                           rows=[], audit=None, streaming=False)
