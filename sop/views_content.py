"""SOP content pages for operators (message templates with lint and preview, the trading calendar)
and the advisor's "标记已发送" on a prepared WeCom message. Roles follow the sidebar's "sop" entry
(operators, admins); everyone else gets 404."""

from datetime import date, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.access import require
from core.errors import ApplicationError
from core.forms import form_add_application_error
from sop import content_services, selectors
from sop.calendar import (
    calendar_month,
    calendar_notice_apply,
    calendar_notice_parse,
    calendar_reseed,
    calendar_status,
    trading_day_set,
)
from sop.forms_content import CalendarNoticeForm, TemplateForm, TradingDayForm
from sop.models import MessageTemplate, TemplateVersion
from sop.templates_lint import VARIABLES, template_highlight, template_preview, template_save, template_submit


def _require_sop(user) -> None:
    require(user, "sop")


# --- message templates ---------------------------------------------------------------------

@login_required
def template_list(request):
    _require_sop(request.user)
    rows = selectors.template_rows()
    return render(request, "sop/content/template_list.html", {"rows": rows})


def _template_form_context(request, form, template=None, preview=None) -> dict:
    versions = list(template.versions.select_related("created_by", "reviewed_by", "product")) if template else []
    return {"form": form, "template": template, "versions": versions, "variables": VARIABLES,
            "preview": preview}


def _preview_from_form(request, form) -> dict:
    body = form.data.get("body", "")
    product = None
    if form.data.get("product"):
        product = form.fields["product"].queryset.filter(pk=form.data.get("product")).first() \
            if str(form.data.get("product")).isdigit() else None
    preview = template_preview(body=body, product=product, user=request.user)
    preview["highlighted"] = template_highlight(body, preview["findings"])
    return preview


def _template_save_view(request, template):
    form = TemplateForm(request.POST or None, template=template,
                        initial=_template_initial(template) if template else None)
    if request.method == "POST":
        submit = request.POST.get("action") != "draft"
        if form.is_valid():
            data = form.cleaned_data
            try:
                version = template_save(actor=request.user, template=template, name=data["name"],
                                        channel=template.channel if template else data["channel"],
                                        body=data["body"], product=data["product"], submit=submit)
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                messages.success(request, _("已保存版本 v%(n)s（%(s)s）") % {
                    "n": version.number, "s": version.get_status_display()})
                return redirect("sop:template_detail", sop_template_id=version.template_id)
        preview = _preview_from_form(request, form)
        return render(request, "sop/content/template_form.html",
                      _template_form_context(request, form, template, preview), status=400)
    preview = None
    if template is not None:
        preview = _preview_from_form(request, TemplateForm(_template_initial(template), template=template))
    return render(request, "sop/content/template_form.html", _template_form_context(request, form, template, preview))


def _template_initial(template) -> dict:
    latest = template.versions.order_by("-number").first()
    return {"name": template.name, "channel": template.channel, "body": latest.body if latest else "",
            "product": latest.product_id if latest else None}


@login_required
def template_create(request):
    _require_sop(request.user)
    return _template_save_view(request, None)


@login_required
def template_detail(request, sop_template_id: int):
    _require_sop(request.user)
    return _template_save_view(request, get_object_or_404(MessageTemplate, pk=sop_template_id))


@login_required
@require_POST
def template_lint_preview(request):
    """htmx: the lint findings and the rendered preview while the operator types."""
    _require_sop(request.user)
    form = TemplateForm(request.POST)
    return render(request, "sop/content/partials/template_preview.html", {"preview": _preview_from_form(request, form)})


@login_required
@require_POST
def template_version_submit(request, sop_template_version_id: int):
    _require_sop(request.user)
    version = get_object_or_404(TemplateVersion, pk=sop_template_version_id)
    try:
        template_submit(actor=request.user, version=version)
        messages.success(request, _("v%(n)s 已提交合规审核") % {"n": version.number})
    except ApplicationError as exc:
        messages.error(request, _("不能提交：%(m)s") % {"m": exc.message})
    return redirect("sop:template_detail", sop_template_id=version.template_id)


# --- trading calendar ----------------------------------------------------------------------

def _month_arg(value: str | None) -> date:
    today = timezone.localdate()
    try:
        year, month = (int(x) for x in (value or "").split("-"))
        return date(year, month, 1)
    except (TypeError, ValueError):
        return today.replace(day=1)


def _calendar_context(request, month: date, form=None, notice_form=None, notice=None) -> dict:
    prev_month = (month.replace(day=1) - timedelta(days=1)).replace(day=1)
    next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    status = calendar_status()
    return {"month": month, "weeks": calendar_month(month.year, month.month), "status": status,
            "prev": prev_month, "next": next_month, "today": timezone.localdate(),
            "form": form or TradingDayForm(initial={"day": timezone.localdate()}),
            "notice_form": notice_form or CalendarNoticeForm(initial={"year": status["next_year"]}), "notice": notice}


@login_required
def calendar_page(request):
    _require_sop(request.user)
    return render(request, "sop/content/calendar.html", _calendar_context(request, _month_arg(request.GET.get("month"))))


@login_required
@require_POST
def calendar_day_set(request):
    _require_sop(request.user)
    form = TradingDayForm(request.POST)
    if not form.is_valid():
        month = form.cleaned_data.get("day") or _month_arg(request.POST.get("month"))
        return render(request, "sop/content/calendar.html", _calendar_context(request, month.replace(day=1), form),
                      status=400)
    row = trading_day_set(actor=request.user, day=form.cleaned_data["day"], is_open=form.cleaned_data["is_open"],
                          note=form.cleaned_data["note"].strip())
    messages.success(request, _("%(d)s 已设为%(s)s") % {"d": row.day.isoformat(), "s": _("交易日") if row.is_open else _("休市")})
    return redirect(f"{reverse('sop:calendar')}?month={row.day:%Y-%m}")


@login_required
@require_POST
def calendar_import(request):
    """Preview the exchange's holiday notice for a year (``action=preview``), then apply it (``action=apply``):
    the text is parsed again on apply, never taken from the preview."""
    _require_sop(request.user)
    form = CalendarNoticeForm(request.POST, request.FILES)
    month = _month_arg(request.POST.get("month"))
    if not form.is_valid():
        return render(request, "sop/content/calendar.html", _calendar_context(request, month, notice_form=form), status=400)
    year, text = form.cleaned_data["year"], form.cleaned_data["text"]
    if request.POST.get("action") == "apply":
        try:
            notice = calendar_notice_apply(actor=request.user, year=year, text=text)
        except ApplicationError:
            pass  # the preview below shows each error with its line
        else:
            messages.success(request, _("已导入 %(year)s 年交易日历：%(open)s 个交易日，%(holidays)s 个工作日休市") % {
                "year": year, "open": notice.open_days, "holidays": len(notice.holidays)})
            return redirect(f"{reverse('sop:calendar')}?month={year}-01")
    notice = calendar_notice_parse(text, year=year)
    for error in notice.errors:
        form.add_error("text", error)
    status = 400 if notice.errors else 200
    return render(request, "sop/content/calendar.html",
                  _calendar_context(request, date(year, 1, 1) if notice.ok else month, notice_form=form, notice=notice),
                  status=status)


@login_required
@require_POST
def calendar_seed_view(request):
    _require_sop(request.user)
    try:
        written = calendar_reseed(actor=request.user)
    except ImportError:
        messages.error(request, _("未安装 exchange-calendars，无法重新导入"))
    else:
        messages.success(request, _("已从 exchange-calendars 重新导入 %(n)s 天（人工维护的日期保持不变）") % {"n": written})
    return redirect("sop:calendar")


# --- the advisor's prepared WeCom message --------------------------------------------------

@login_required
@require_POST
def wecom_task_sent(request, sop_wecom_task_id: int):
    """"标记已发送" from the task inbox (htmx: answers with the task's row)."""
    return _wecom_task_answer(request, sop_wecom_task_id, content_services.wecom_task_mark_sent)


@login_required
@require_POST
def wecom_task_skip(request, sop_wecom_skip_task_id: int):
    """"客户未回复/跳过": the advisor does not send this message."""
    note = (request.POST.get("note") or "").strip()[:200]
    return _wecom_task_answer(request, sop_wecom_skip_task_id,
                              lambda *, user, task_id: content_services.wecom_task_skip(user=user, task_id=task_id,
                                                                                         note=note))


def _wecom_task_answer(request, task_id: int, action):
    from customers.models import Task

    try:
        action(user=request.user, task_id=task_id)
        error = None
    except ApplicationError as exc:
        error = exc.message
    task = Task.objects.visible_to(request.user).select_related("customer").filter(pk=task_id).first()
    if task is None:
        raise Http404("task")
    content_services.wecom_tasks_attach([task])
    context = {"task": task, "error": error, "outcomes": Task.Outcome.choices}
    return render(request, "customers/partials/task_row.html", context, status=400 if error else 200)
