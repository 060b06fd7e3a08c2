"""Custom fields on pages: an admin's definitions (客户 → 自定义字段; everyone else gets 404, as for any page their
role has no entry for) and a customer's values on the 360° page (htmx: read view ⇄ edit form in place). Reads via
customers/custom_fields.py, writes via services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from core.errors import ApplicationError
from customers import custom_fields as cf
from customers import selectors, services
from customers.forms import CustomFieldDefinitionForm
from customers.models import Customer, CustomFieldDefinition

# --- a customer's values (360° page) -----------------------------------------------------------

def custom_fields_section(*, user, customer) -> dict:
    """Context of the 360° page's 自定义字段 card (customers.views.customer_detail and this module)."""
    definitions = cf.definitions_active()
    return {"custom_rows": cf.custom_fields_rows(customer, definitions),
            "custom_may_edit": cf.custom_fields_may_edit(user) and bool(definitions),
            "custom_may_define": cf.custom_fields_may_define(user)}


@login_required
@require_http_methods(["GET", "POST"])
def customer_custom_fields(request, external_id):
    """GET: the card (``?mode=edit``: its form, for roles that may edit). POST: save every active field's value and
    answer the card again, or the form with each field's reason (400) — nothing is saved then."""
    customer = selectors.customer_get_for_user(user=request.user, external_id=external_id)
    editing = request.method == "POST" or request.GET.get("mode") == "edit"
    if editing and not cf.custom_fields_may_edit(request.user):
        raise PermissionDenied
    context = {"customer": customer}
    if request.method == "POST":
        definitions = cf.definitions_active()
        posted = {d.code: (request.POST.getlist(f"cf:{d.code}") if d.type == "multi_choice"
                           else request.POST.get(f"cf:{d.code}", "")) for d in definitions}
        try:
            services.customer_custom_fields_set(actor=request.user, customer=customer, values=posted)
        except ApplicationError as exc:
            if exc.status_code == 403:
                raise PermissionDenied from None
            errors = {d.get("field"): d.get("message") for d in exc.details if isinstance(d, dict)}
            shown = Customer(custom_fields={**(customer.custom_fields or {}), **posted})
            context.update(custom_fields_section(user=request.user, customer=shown), editing=True,
                           custom_errors=errors, error=exc.message)
            return render(request, "customers/partials/custom_fields.html", context, status=400)
        context["saved"] = True
    context.update(custom_fields_section(user=request.user, customer=customer), editing=editing and
                   request.method == "GET")
    return render(request, "customers/partials/custom_fields.html", context)


# --- definitions (admins) ----------------------------------------------------------------------

def _require_define(user) -> None:
    if not cf.custom_fields_may_define(user):
        raise Http404("custom field definitions are not available for this role")


def _definition_get(field_id: int) -> CustomFieldDefinition:
    definition = CustomFieldDefinition.objects.filter(pk=field_id).first()
    if definition is None:
        raise Http404("no such custom field")
    return definition


def _form_errors(form, exc: ApplicationError) -> None:
    placed = False
    for detail in exc.details if isinstance(exc.details, list) else []:
        if isinstance(detail, dict) and detail.get("field") in form.fields:
            form.add_error(detail["field"], detail.get("message") or exc.message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


@login_required
def custom_field_list(request):
    _require_define(request.user)
    definitions = list(CustomFieldDefinition.objects.order_by("-active", "order", "id"))
    return render(request, "customers/custom_fields.html", {"definitions": definitions})


def _definition_values(form) -> dict:
    data = form.cleaned_data
    return {"label": data["label"], "options": form.option_list(), "required": data["required"],
            "min_value": data.get("min_value"), "max_value": data.get("max_value"),
            "max_length": data.get("max_length"), "order": data.get("order") or 0}


@login_required
@require_http_methods(["GET", "POST"])
def custom_field_create(request):
    _require_define(request.user)
    form = CustomFieldDefinitionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            definition = services.custom_field_definition_create(
                actor=request.user, code=form.cleaned_data["code"], field_type=form.cleaned_data["type"],
                **_definition_values(form))
        except ApplicationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, _("已新建自定义字段“%(label)s”") % {"label": definition.label})
            return redirect("customers:custom_field_list")
    return render(request, "customers/custom_field_form.html", {"form": form, "definition": None},
                  status=400 if request.method == "POST" else 200)


@login_required
@require_http_methods(["GET", "POST"])
def custom_field_edit(request, field_id: int):
    _require_define(request.user)
    definition = _definition_get(field_id)
    form = CustomFieldDefinitionForm(request.POST or None, definition=definition)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.custom_field_definition_update(actor=request.user, definition=definition,
                                                             **_definition_values(form))
        except ApplicationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, _("已保存“%(label)s”") % {"label": result["definition"].label})
            if result["not_fitting"]:
                messages.warning(request, _("%(n)s 位客户的现有值不符合新的规则：已原样保留，并在客户页标记。") % {
                    "n": f"{result['not_fitting']:,}"})
            return redirect("customers:custom_field_list")
    return render(request, "customers/custom_field_form.html", {"form": form, "definition": definition},
                  status=400 if request.method == "POST" else 200)


@login_required
@require_POST
def custom_field_active(request, field_id: int):
    """Deactivate (``active=0``) or reactivate a field."""
    _require_define(request.user)
    definition = _definition_get(field_id)
    active = request.POST.get("active") == "1"
    try:
        services.custom_field_definition_set_active(actor=request.user, definition=definition, active=active)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        message = _("已启用“%(label)s”") if active else _("已停用“%(label)s”：字段已隐藏，已有的值保留，重新启用后恢复显示")
        messages.success(request, message % {"label": definition.label})
    return redirect("customers:custom_field_list")
