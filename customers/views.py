"""Advisor workbench pages: 我的客户, 客户 360°, tasks and notes. Reads via selectors, writes via services."""

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from core.access import feature_required
from core.crypto import mask_id_number, mask_mobile
from core.errors import ApplicationError
from core.scoping import scope_for
from customers import selectors, services
from customers.custom_fields import custom_fields_may_define
from customers.forms import CustomerFilterForm, NoteForm, RevealForm, TaskCompleteForm
from customers.imports import import_allowed
from customers.models import Task
from tagging.selectors import customer_history_rows, customer_tier_history
from tagging.tiers import customer_tier
from tagging.views import tag_section_context

PAGE_SIZE = 50


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


@login_required
def workbench(request):
    """工作台: today's tasks (overdue first) and the user's own numbers this week."""
    context = {"inbox": _inbox_with_sop_messages(request.user), "outcomes": Task.Outcome.choices}
    if request.user.role == "advisor":
        context["week"] = selectors.advisor_week_numbers(user=request.user)
    return render(request, "customers/workbench.html", context)


def _non_empty(querydict):
    """Drop empty parameters (an untouched <select> sends ``name=``) before binding a filter form."""
    data = querydict.copy()
    for key in list(data):
        values = [v for v in data.getlist(key) if v != ""]
        if values:
            data.setlist(key, values)
        else:
            del data[key]
    return data


@login_required
@require_http_methods(["GET", "POST"])
def customer_list(request):
    """GET: the filters, in the address so a view can be shared. POST: the same plus the search term ``q``, which
    never goes in a URL (a ``q`` in the address is ignored); the answer pushes the address of the filters alone."""
    params = _non_empty(request.GET)
    params.pop("after", None)
    params.pop("q", None)
    if request.method == "POST":
        for key, values in _non_empty(request.POST).lists():
            if key not in ("csrfmiddlewaretoken", "after"):
                params.setlist(key, values)
    after = request.GET.get("after")
    form = CustomerFilterForm(params, user=request.user)
    error, status = "", 200
    page = selectors.CustomerPage(customers=[], total=0, next_cursor=None, sort="assets")
    if form.is_valid():
        try:
            page = services.customer_search(user=request.user, filters=form.filters(), sort=form.sort_key(),
                                            after=after, limit=PAGE_SIZE, with_total=not after,
                                            ip_address=_client_ip(request))
        except ApplicationError as err:
            error, status = err.message, err.status_code
    query = params.copy()
    query.pop("q", None)
    _next_tasks_attach(user=request.user, customers=page.customers)
    context = {"form": form, "page": page, "query": query.urlencode(), "search_error": error,
               "chips": _filter_chips(form, params),
               "can_search_pii": scope_for(request.user).personal_data,
               "today_cutoff": selectors.risk_expiry_cutoff(), "can_import": import_allowed(request.user),
               "can_define_fields": custom_fields_may_define(request.user)}
    if request.htmx and after:
        return render(request, "customers/partials/customer_rows.html", context, status=status)
    if request.htmx and request.htmx.target == "customer-results":
        response = render(request, "customers/partials/customer_results.html", context, status=status)
        if request.method == "POST":
            response["HX-Push-Url"] = reverse("customers:list") + (f"?{context['query']}" if context["query"] else "")
        return response
    return render(request, "customers/list.html", context, status=status)


def _next_tasks_attach(*, user, customers) -> None:
    """Each list row's earliest open task as ``next_task`` (None without one), in one query."""
    by_customer = {}
    if customers:
        tasks = (Task.objects.visible_to(user).filter(customer_id__in=[c.pk for c in customers],
                                                      status=Task.Status.OPEN)
                 .order_by("customer_id", "due_at", "id").distinct("customer_id"))
        by_customer = {t.customer_id: t for t in tasks}
    for customer in customers:
        customer.next_task = by_customer.get(customer.pk)


def _filter_chips(form, params) -> list[dict]:
    """The active filters as chips: the field, the value's label, and the list's address without that value
    (the search term never goes in an address; static/js/scrm.js removes a chip in place, keeping it)."""
    chips = []
    for name, field in form.fields.items():
        if name == "sort":
            continue
        labels = {str(code): str(label) for code, label in getattr(field, "choices", [])}
        for value in params.getlist(name):
            rest = params.copy()
            rest.setlist(name, [v for v in rest.getlist(name) if v != value])
            rest.pop("q", None)
            shown = labels.get(value, value)
            if name == "q":  # a mobile or ID number typed as the search shows masked, like everywhere else
                shown = {"mobile": mask_mobile, "id_number": mask_id_number}.get(
                    selectors.customer_search_kind(value), str)(selectors.customer_search_term(value))
            chips.append({"name": name, "code": value, "label": field.label, "value": shown,
                          "url": reverse("customers:list") + (f"?{rest.urlencode()}" if rest else "")})
    return chips


@login_required
def customer_detail(request, external_id):
    customer = selectors.customer_get_for_user(user=request.user, external_id=external_id)
    trades = selectors.trade_summary(customer=customer)
    context = {
        "customer": customer,
        "trades": trades,
        "trade_months_json": json.dumps([{"month": f"{m['month']:%Y-%m}", "amount": float(m["amount"])}
                                         for m in trades["by_month"]]),
        "risk_expired": selectors.risk_assessment_expired(customer),
        "can_reveal": scope_for(request.user).personal_data,
        "timeline": selectors.customer_timeline(customer=customer),
        "touches": selectors.customer_touches(customer=customer),
        "notes": selectors.customer_notes(customer=customer),
        "tasks": selectors.customer_tasks(customer=customer),
        "note_form": NoteForm(),
        "outcomes": Task.Outcome.choices,
    }
    context.update(tag_section_context(request=request, customer=customer))
    from customers.views_custom_fields import custom_fields_section

    context.update(custom_fields_section(user=request.user, customer=customer))
    context["tier"] = customer_tier(customer=customer)
    context["tier_history"] = customer_tier_history(customer=customer)
    context["history_rows"] = customer_history_rows(tier_history=context["tier_history"],
                                                    tag_history=context.get("tag_history") or [])
    from sop.content_services import customer_journeys, wecom_tasks_attach

    context["sop_journeys"] = customer_journeys(customer=customer)
    wecom_tasks_attach(context["tasks"])
    return render(request, "customers/detail.html", context)


@login_required
@require_POST
def customer_reveal(request, external_id):
    customer = selectors.customer_get_for_user(user=request.user, external_id=external_id)
    form = RevealForm(request.POST)
    if not form.is_valid():
        return render(request, "customers/partials/reveal_form.html",
                      {"customer": customer, "field": request.POST.get("field", "mobile"), "form": form}, status=400)
    try:
        value = services.customer_reveal(user=request.user, customer=customer, field=form.cleaned_data["field"],
                                         reason=form.cleaned_data["reason"], ip_address=_client_ip(request))
    except ApplicationError as err:
        return HttpResponse(err.message, status=err.status_code)
    return render(request, "customers/partials/revealed.html", {"value": value})


@login_required
@require_POST
def note_add(request, external_id):
    customer = selectors.customer_get_for_user(user=request.user, external_id=external_id)
    form = NoteForm(request.POST)
    if form.is_valid():
        services.note_create(author=request.user, customer=customer, body=form.cleaned_data["body"])
        form = NoteForm()
    status = 200 if not form.errors else 400
    if request.POST.get("compact"):  # the quick note on a list row answers with one line
        message = _("已记录") if status == 200 else _("跟进记录不能为空")
        return HttpResponse(format_html('<span class="small {}" data-testid="quick-note-result">{}</span>',
                                        "text-success" if status == 200 else "text-danger", message), status=status)
    response = render(request, "customers/partials/notes.html",
                      {"customer": customer, "notes": selectors.customer_notes(customer=customer), "note_form": form},
                      status=status)
    if status == 200:
        response["HX-Trigger"] = "customer-tags-changed"  # conversation tags may have new suggestions
    return response


def _inbox_with_sop_messages(user) -> dict:
    """The inbox, each SOP WeCom task carrying its prepared message (``task.sop_message``)."""
    from sop.content_services import wecom_tasks_attach

    inbox = selectors.task_inbox(user=user)
    wecom_tasks_attach(*inbox.values())
    return inbox


@feature_required("tasks")
def task_inbox(request):
    return render(request, "customers/tasks.html",
                  {"inbox": _inbox_with_sop_messages(request.user), "outcomes": Task.Outcome.choices})


@feature_required("tasks")
@require_POST
def task_complete(request, task_id):
    task = selectors.task_get_for_user(user=request.user, task_id=task_id)
    form = TaskCompleteForm(request.POST)
    error = None
    if form.is_valid():
        try:
            task = services.task_complete(user=request.user, task=task, outcome=form.cleaned_data["outcome"],
                                          note=form.cleaned_data["note"])
        except ApplicationError as err:
            error = err.message
    else:
        error = _("请选择任务结果")
    from sop.content_services import wecom_tasks_attach

    wecom_tasks_attach([task])
    return render(request, "customers/partials/task_row.html",
                  {"task": task, "error": error, "outcomes": Task.Outcome.choices}, status=400 if error else 200)
