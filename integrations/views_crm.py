"""CRM 同步 page (admins only, 404 for everyone else): where each resource stands, the runs with
their counts and errors, and 立即同步, which queues the Celery task after commit."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from integrations.crm import sync
from integrations.models import CrmSyncRun
from integrations.views_webhooks import require_admin


@login_required
def crm_page(request):
    """GET: runs and state. POST (立即同步): queue a sync now."""
    require_admin(request.user)
    if request.method == "POST":
        from integrations import tasks

        if not settings.CRM_BASE_URL:
            messages.error(request, _("未配置 CRM_BASE_URL，无法同步"))
        else:
            label = f"manual:{request.user.username}"
            transaction.on_commit(lambda: tasks.crm_sync.delay(label))
            messages.success(request, _("已开始同步，稍后刷新页面查看结果"))
        return redirect("integrations:crm")
    runs = list(sync.crm_sync_runs())
    last_failed = next((r for r in runs if r.status == CrmSyncRun.Status.FAILED), None)
    return render(request, "integrations/crm.html", {
        "runs": runs, "states": sync.crm_sync_states(), "configured": bool(settings.CRM_BASE_URL),
        "base_url": settings.CRM_BASE_URL, "last_failed": last_failed,
        "running": any(r.status == CrmSyncRun.Status.RUNNING for r in runs[:1]),
    })
