"""用户与权限: staff accounts for admins (everyone else gets 404, as on the other admin pages), and the password
change every staff member uses, which ends the "must change password" state an admin's reset leaves."""

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.access import may
from core.errors import ApplicationError
from core.forms import form_add_application_error
from core.models import User
from core.staff_forms import PasswordResetForm, StaffFilterForm, StaffForm
from core.staff_selectors import staff_audit_for, staff_holdings, staff_list, staff_lockouts
from core.staff_services import (
    PasswordMode,
    staff_activate,
    staff_create,
    staff_deactivate,
    staff_password_changed,
    staff_password_reset,
    staff_unlock,
    staff_update,
)


def _require_admin(user) -> None:
    if not may(user, "users"):
        raise Http404("not for this role")


def _ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _staff_or_404(request, user_id: int) -> User:
    _require_admin(request.user)
    return get_object_or_404(User.objects.select_related("branch"), pk=user_id)


def _chips(form, params) -> list[dict]:
    """Active filters as chips, each with the list's address without it (static/js/scrm.js removes it in place)."""
    chips = []
    for name, field in form.fields.items():
        value = params.get(name)
        if not value:
            continue
        rest = params.copy()
        rest.pop(name, None)
        rest.pop("page", None)
        labels = {str(code): str(label) for code, label in getattr(field, "choices", [])}
        shown = _("是") if name == "locked" else labels.get(value, value)
        chips.append({"name": name, "code": value, "label": field.label, "value": shown,
                      "url": reverse("staff:list") + (f"?{rest.urlencode()}" if rest else "")})
    return chips


@login_required
def staff_list_page(request):
    _require_admin(request.user)
    form = StaffFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    lockouts = staff_lockouts()
    page = Paginator(staff_list(filters=filters, lockouts=lockouts), 50).get_page(request.GET.get("page"))
    for row in page:
        row.lockout = lockouts.get(row.username)
    locked = list(User.objects.filter(username__in=list(lockouts)).select_related("branch").order_by("username"))
    for row in locked:
        row.lockout = lockouts[row.username]
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "core/staff_list.html", {
        "form": form, "page": page, "locked": locked, "chips": _chips(form, request.GET),
        "query": query.urlencode()})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def staff_create_page(request):
    """POST: create; with a generated password the answer shows it once (it is not stored anywhere readable)."""
    _require_admin(request.user)
    form = StaffForm(request.POST or None, creating=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        set_by_admin = data["password_mode"] == PasswordMode.SET_BY_ADMIN
        try:
            user, generated = staff_create(
                actor=request.user, username=data["username"], display_name=data["display_name"], role=data["role"],
                branch_code=data["branch"], employee_code=data["employee_code"],
                password=data["password"] if set_by_admin else None, ip_address=_ip(request))
        except ApplicationError as exc:
            form_add_application_error(form, exc)
        else:
            if generated:
                return render(request, "core/staff_password_once.html",
                              {"staff": user, "password": generated, "created": True})
            messages.success(request, _("账号已创建；对方首次登录后须修改您设置的密码"))
            return redirect("staff:edit", user_id=user.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "core/staff_form.html", {"form": form}, status=status)


def _edit_context(request, staff: User, **extra) -> dict:
    holdings = staff_holdings(user=staff)
    transfer_url = None
    if staff.role == "advisor" and holdings["clients"] and may(request.user, "transfers"):
        try:
            transfer_url = reverse("wecom:transfer_create") + "?" + urlencode({"advisor": staff.pk})
        except NoReverseMatch:
            transfer_url = None
    return {"staff": staff, "holdings": holdings, "transfer_url": transfer_url,
            "lockout": staff_lockouts().get(staff.username), "audit_rows": staff_audit_for(user=staff),
            "is_self": staff.pk == request.user.pk,
            "form": extra.pop("form", None) or StaffForm(initial={
                "display_name": staff.display_name, "role": staff.role,
                "branch": staff.branch.code if staff.branch_id else "", "employee_code": staff.employee_code or ""},
                creating=False),
            "reset_form": extra.pop("reset_form", None) or PasswordResetForm(),
            **extra}


@login_required
@require_http_methods(["GET", "POST"])
def staff_edit_page(request, user_id: int):
    """GET: the account with its actions. POST: save role, branch, employee code and name."""
    staff = _staff_or_404(request, user_id)
    if request.method == "POST":
        form = StaffForm(request.POST, creating=False)
        if form.is_valid():
            data = form.cleaned_data
            try:
                staff_update(actor=request.user, user=staff, display_name=data["display_name"], role=data["role"],
                             branch_code=data["branch"], employee_code=data["employee_code"], ip_address=_ip(request))
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                messages.success(request, _("已保存"))
                return redirect("staff:edit", user_id=staff.pk)
        return render(request, "core/staff_edit.html", _edit_context(request, staff, form=form), status=400)
    return render(request, "core/staff_edit.html", _edit_context(request, staff))


@login_required
@require_POST
def staff_deactivate_action(request, user_id: int):
    staff = _staff_or_404(request, user_id)
    try:
        staff_deactivate(actor=request.user, user=staff, ip_address=_ip(request))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:  # the account page then offers 离职继承 for the clients the advisor still holds
        messages.success(request, _("账号已停用，不能再登录"))
    return redirect("staff:edit", user_id=staff.pk)


@login_required
@require_POST
def staff_activate_action(request, user_id: int):
    staff = _staff_or_404(request, user_id)
    try:
        staff_activate(actor=request.user, user=staff, ip_address=_ip(request))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("账号已重新启用"))
    return redirect("staff:edit", user_id=staff.pk)


@never_cache
@login_required
@require_POST
def staff_password_reset_action(request, user_id: int):
    staff = _staff_or_404(request, user_id)
    form = PasswordResetForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        set_by_admin = data["password_mode"] == PasswordMode.SET_BY_ADMIN
        try:
            generated = staff_password_reset(actor=request.user, user=staff, ip_address=_ip(request),
                                             password=data["password"] if set_by_admin else None)
        except ApplicationError as exc:
            if exc.details:
                form_add_application_error(form, exc)
            else:
                messages.error(request, exc.message)
                return redirect("staff:edit", user_id=staff.pk)
        else:
            if generated:
                return render(request, "core/staff_password_once.html", {"staff": staff, "password": generated})
            messages.success(request, _("密码已重置；对方下次登录后须修改"))
            return redirect("staff:edit", user_id=staff.pk)
    return render(request, "core/staff_edit.html", _edit_context(request, staff, reset_form=form), status=400)


@login_required
@require_POST
def staff_unlock_action(request, user_id: int):
    staff = _staff_or_404(request, user_id)
    try:
        staff_unlock(actor=request.user, user=staff, ip_address=_ip(request))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("已解除登录锁定"))
    return redirect("staff:list" if request.POST.get("next") == "list" else reverse("staff:edit", args=[staff.pk]))


# --- every staff member's own password ------------------------------------------------------------------

class OwnPasswordChangeForm(PasswordChangeForm):
    def clean_new_password1(self):
        password = self.cleaned_data.get("new_password1")
        if password and self.user.check_password(password):
            raise forms.ValidationError(_("新密码不能与当前密码相同"), code="password_unchanged")
        return password


class OwnPasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, which also ends "must change password" and writes the audit row."""

    form_class = OwnPasswordChangeForm

    def form_valid(self, form):
        response = super().form_valid(form)
        staff_password_changed(user=self.request.user, ip_address=_ip(self.request))
        return response
