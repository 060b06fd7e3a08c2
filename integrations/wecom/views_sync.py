"""企业微信 pages (the "wecom" nav entry's roles, 404 for everyone else; see access.py): the connection and sync runs
with 立即同步 per kind, and the review queue of contacts no customer could be matched to."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.access import require
from core.errors import ApplicationError
from integrations.wecom import contacts, sync
from integrations.wecom.client import wecom_client, wecom_configured
from integrations.wecom.models import ExternalContact, SyncRun


@login_required
def sync_runs_page(request):
    """GET: connection status and runs. POST kind=…: queue a sync of that kind after commit."""
    require(request.user, "wecom")
    configured = wecom_configured()
    if request.method == "POST":
        kind = request.POST.get("kind") or SyncRun.Kind.ALL
        if kind not in SyncRun.Kind.values:
            messages.error(request, _("未知的同步范围"))
        elif not configured:
            messages.error(request, _("未配置企业微信（WECOM_CORP_ID、WECOM_SECRET），无法同步"))
        else:
            from integrations.wecom.tasks_sync import wecom_sync

            label = f"manual:{request.user.username}"
            transaction.on_commit(lambda: wecom_sync.delay(kind, label))
            messages.success(request, _("已开始同步（%(kind)s），下方同步记录会自动更新") % {
                "kind": SyncRun.Kind(kind).label})
            last = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            return redirect(f"{reverse('wecom:sync_runs')}?queued={last}")
        return redirect("wecom:sync_runs")
    token_cached = configured and wecom_client().token_cached()
    match_counts = contacts.contact_match_counts()
    return render(request, "wecom/sync_runs.html", {
        **_runs_context(request), "configured": configured, "base_url": settings.WECOM_API_BASE_URL,
        "corp_id": settings.WECOM_CORP_ID, "token_cached": token_cached, "kinds": SyncRun.Kind.choices,
        "callback_configured": bool(settings.WECOM_CALLBACK_TOKEN and settings.WECOM_CALLBACK_AES_KEY),
        "unmatched": match_counts[ExternalContact.Match.UNMATCHED], "match_counts": match_counts,
    })


def _runs_context(request) -> dict:
    """The runs, and whether the table keeps polling: a run is in progress, or one was queued (``?queued=<the
    last run id then>``) and has not started yet; polling of a queued run gives up after 10 minutes."""
    runs = list(sync.sync_runs())
    raw = request.GET.get("queued") or ""
    queued = int(raw) if raw.isdigit() else None
    waiting = queued is not None and not any(r.pk > queued for r in runs) and not (
        SyncRun.objects.filter(pk=queued, started_at__lt=timezone.now() - timedelta(minutes=10)).exists())
    running = any(r.status == SyncRun.Status.RUNNING for r in runs)
    return {"runs": runs, "waiting": waiting, "polling": waiting or running,
            "queued": queued if queued is not None else ""}


@login_required
def sync_runs_table(request):
    """GET (htmx, every 2 s while a sync is queued or running): the runs table alone."""
    require(request.user, "wecom")
    match_counts = contacts.contact_match_counts()  # the counts above the table change with the sync too
    return render(request, "wecom/partials/sync_runs_table.html", {
        **_runs_context(request), "oob": True, "match_counts": match_counts,
        "unmatched": match_counts[ExternalContact.Match.UNMATCHED]})


@login_required
def review_page(request):
    """GET: unmatched contacts. POST action=link|create|ignore, contact=<id>[, customer=<客户号或手机号>]."""
    require(request.user, "wecom")
    status = 200
    errors: dict[int, str] = {}
    if request.method == "POST":
        action, raw_id = request.POST.get("action"), request.POST.get("contact") or ""
        try:
            contact_id = int(raw_id)
            if action == "link":
                contact = contacts.contact_link(actor=request.user, contact_id=contact_id,
                                                customer_query=request.POST.get("customer", ""))
                messages.success(request, _("已将 %(contact)s 关联到客户 %(customer)s") % {
                    "contact": contact, "customer": contact.customer})
            elif action == "create":
                contact = contacts.contact_customer_create(actor=request.user, contact_id=contact_id)
                messages.success(request, _("已为 %(contact)s 新建客户 %(customer)s") % {
                    "contact": contact, "customer": contact.customer.external_id})
            elif action == "ignore":
                contact = contacts.contact_ignore(actor=request.user, contact_id=contact_id)
                messages.success(request, _("已忽略 %(contact)s") % {"contact": contact})
            else:
                raise ApplicationError("wecom_review_action", _("未知的操作"))
            return redirect(f"{request.path}?page={request.POST.get('page') or 1}")
        except ValueError:
            messages.error(request, _("联系人无效"))
            status = 400
        except ApplicationError as exc:
            errors[int(raw_id) if raw_id.isdigit() else 0] = exc.message
            status = exc.status_code if exc.status_code != 404 else 400
    paginator = Paginator(contacts.review_queue(), 25)
    page = paginator.get_page(request.GET.get("page") or request.POST.get("page"))
    rows = [{**row, "error": errors.get(row["contact"].pk, ""),
             "customer_value": request.POST.get("customer", "") if errors.get(row["contact"].pk) else ""}
            for row in contacts.review_rows(page.object_list)]
    shown = {row["contact"].pk for row in rows}
    for contact_id, message in errors.items():
        if contact_id not in shown:  # e.g. already resolved by someone else: say it above the list
            messages.error(request, message)
    return render(request, "wecom/review.html", {"rows": rows, "page": page, "total": paginator.count},
                  status=status)

