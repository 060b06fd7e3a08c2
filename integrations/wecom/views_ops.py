"""Pages for contact ways (渠道活码: operators and admins) and client transfers (离职继承/在职转接: branch
managers for their branch, admins for all). Everyone else gets 404, as do objects outside the user's scope."""


from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from core.access import require
from core.errors import ApplicationError
from core.forms import form_add_application_error
from integrations.wecom import contact_ways as cw
from integrations.wecom import transfers as tr
from integrations.wecom.forms_ops import ContactWayForm, TransferForm
from integrations.wecom.models import CallbackEvent, ContactFollow

# --- contact ways --------------------------------------------------------------------------------

@login_required
def contact_ways(request):
    require(request.user, "contact_ways")
    ways = cw.contact_ways_for(request.user)
    return render(request, "wecom/contact_ways.html", {"ways": ways})


@login_required
@require_http_methods(["GET", "POST"])
def contact_way_create(request):
    require(request.user, "contact_ways")
    form = ContactWayForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            way = cw.contact_way_create(actor=request.user, name=data["name"], channel=data["channel"],
                                        campaign=data["campaign"], advisor=data["advisor"], tags=data["tags"],
                                        welcome_message=data["welcome_message"])
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            messages.success(request, _("渠道活码已生成"))
            return redirect("wecom:contact_way_detail", contact_way_id=way.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "wecom/contact_way_form.html", {"form": form}, status=status)


@login_required
def contact_way_detail(request, contact_way_id):
    require(request.user, "contact_ways")
    way = get_object_or_404(cw.contact_ways_for(request.user), pk=contact_way_id)
    follows = (ContactFollow.objects.filter(state=way.state).select_related("contact__customer", "staff")
               .order_by("-added_at", "-pk")[:50])
    return render(request, "wecom/contact_way_detail.html", {"way": way, "follows": follows})


@login_required
@require_POST
def contact_way_deactivate(request, contact_way_id):
    require(request.user, "contact_ways")
    way = get_object_or_404(cw.contact_ways_for(request.user), pk=contact_way_id)
    try:
        cw.contact_way_deactivate(actor=request.user, contact_way=way)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("渠道活码已停用，二维码不再可用"))
    return redirect("wecom:contact_way_detail", contact_way_id=way.pk)


# --- transfers -----------------------------------------------------------------------------------

@login_required
def transfers(request):
    require(request.user, "transfers")
    rows = tr.transfer_with_counts(tr.transfers_for(request.user))[:200]
    return render(request, "wecom/transfers.html", {"transfers": rows})


@login_required
@require_http_methods(["GET", "POST"])
def transfer_create(request):
    """GET without choices: the form; GET with them: the form and the clients that would move; POST: start."""
    require(request.user, "transfers")
    bound = request.POST if request.method == "POST" else (request.GET if "from_advisor" in request.GET else None)
    # ?advisor=<id> (the users page's 离职继承 link) preselects the departing advisor without submitting
    initial = {"from_advisor": request.GET["advisor"]} if bound is None and request.GET.get("advisor", "").isdigit() else {}
    form = TransferForm(bound, user=request.user, initial=initial)
    preview, plan = None, None
    if bound is not None and form.is_valid():
        data = form.cleaned_data
        try:
            choice = {"kind": data["kind"], "from_advisor": data["from_advisor"], "to_advisor": data["to_advisor"]}
            if request.method == "POST":
                transfer, submitted = tr.transfer_start_and_submit(actor=request.user, **choice)
                messages.success(request, _("客户已转给接替投顾；企业微信中的接替结果会陆续更新"))
                if not submitted:
                    messages.warning(request, _("提交企业微信失败，系统会自动重试"))
                return redirect("wecom:transfer_detail", transfer_id=transfer.pk)
            tr.transfer_check(actor=request.user, **choice)
            preview, plan = tr.transfer_preview(actor=request.user, **choice)
        except ApplicationError as exc:
            form_add_application_error(form, exc)
    status = 400 if bound is not None and form.errors else 200
    counts = plan.counts if preview is not None else {}
    context = {"form": form, "preview": preview, "plan": plan,
               "preview_wecom": counts.get(tr.Plan.WECOM, 0),
               "preview_moves": sum(n for p, n in counts.items() if p in tr.MOVED_HERE),
               "preview_stays": sum(n for p, n in counts.items() if p not in tr.MOVED_HERE),
               "action": reverse("wecom:transfer_create")}
    return render(request, "wecom/transfer_form.html", context, status=status)


@login_required
def transfer_detail(request, transfer_id):
    require(request.user, "transfers")
    transfer = get_object_or_404(tr.transfer_with_counts(tr.transfers_for(request.user)), pk=transfer_id)
    items = tr.transfer_items_for(user=request.user, transfer=transfer)
    return render(request, "wecom/transfer_detail.html", {"transfer": transfer, "items": items})


# --- callback log (admins) -------------------------------------------------------------------------

@login_required
def callback_events(request):
    """The latest callbacks as received, with their processing status and error (unknown events: ignored)."""
    require(request.user, "integrations")
    status = request.GET.get("status", "")
    rows = CallbackEvent.objects.all()
    if status in CallbackEvent.Status.values:
        rows = rows.filter(status=status)
    return render(request, "wecom/callback_events.html",
                  {"events": rows[:200], "status": status, "statuses": CallbackEvent.Status.choices})
