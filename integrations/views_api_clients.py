"""Admin pages: the integrations overview and API clients (list, create → key shown once, deactivate).
API clients are firm-wide admin objects: everyone else gets 404."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from core.access import require
from core.errors import ApplicationError
from core.models import Branch
from integrations.api_clients import api_client_create, api_client_deactivate, api_client_list
from integrations.models import ApiClient, ApiScope

# Links on the overview page: (url name, title, description). Other integration pages append theirs.
INTEGRATION_PAGES: list[tuple[str, str, str]] = [
    ("integrations:api_clients", gettext_lazy("API 客户端"), gettext_lazy("为外部系统签发 /api/v1 的访问密钥")),
    ("integrations:webhooks", gettext_lazy("Webhook 订阅"), gettext_lazy("把客户与标签变化推送给外部系统")),
    ("integrations:crm", gettext_lazy("CRM 同步"), gettext_lazy("从 CRM 拉取客户、产品与交易")),
    ("wecom:sync_runs", gettext_lazy("企业微信"), gettext_lazy("同步成员、客户联系、企业标签与客户群；人工关联客户")),
    ("wecom:contact_ways", gettext_lazy("渠道活码"), gettext_lazy("按渠道/活动/投顾生成企业微信联系二维码")),
    ("wecom:transfers", gettext_lazy("客户转接"), gettext_lazy("离职继承与在职转接，按客户跟踪结果")),
    ("wecom:callback_events", gettext_lazy("企业微信回调"), gettext_lazy("收到的回调事件及其处理结果")),
]


def _require_admin(user) -> None:
    require(user, "integrations")


class ApiClientForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("名称"), max_length=100,
                           widget=forms.TextInput(attrs={"class": "form-control", "placeholder": "CRM"}))
    branch = forms.ModelChoiceField(label=gettext_lazy("营业部"), queryset=Branch.objects.order_by("code"),
                                    required=False, empty_label=gettext_lazy("全部营业部"), to_field_name="code",
                                    widget=forms.Select(attrs={"class": "form-select"}))
    scopes = forms.MultipleChoiceField(label=gettext_lazy("权限"), choices=ApiScope.choices,
                                       widget=forms.CheckboxSelectMultiple)
    rate_limit_per_minute = forms.IntegerField(label=gettext_lazy("每分钟请求上限"), min_value=1, max_value=100_000,
                                               initial=600, widget=forms.NumberInput(attrs={"class": "form-control"}))


@login_required
def integrations_index(request):
    _require_admin(request.user)
    from django.urls import NoReverseMatch, reverse

    pages = []
    for name, title, description in INTEGRATION_PAGES:
        try:
            pages.append({"url": reverse(name), "title": title, "description": description})
        except NoReverseMatch:
            continue
    return render(request, "integrations/index.html", {"pages": pages})


@login_required
def api_client_list_page(request):
    """GET: clients and the create form. POST: create; the answer shows the key once."""
    _require_admin(request.user)
    form = ApiClientForm(request.POST or None)
    new_key = new_client = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                new_client, new_key = api_client_create(
                    actor=request.user, name=data["name"], scopes=data["scopes"],
                    branch_code=data["branch"].code if data["branch"] else None,
                    rate_limit_per_minute=data["rate_limit_per_minute"])
                form = ApiClientForm()
            except ApplicationError as exc:
                form.add_error("name" if exc.code.endswith(("name_taken", "name_required")) else None, exc.message)
                status = 400
        else:
            status = 400
    labels = dict(ApiScope.choices)
    clients = api_client_list()
    for client in clients:
        client.scope_labels = [labels.get(s, s) for s in client.effective_scopes()]
    return render(request, "integrations/api_clients.html",
                  {"form": form, "clients": clients, "new_key": new_key, "new_client": new_client}, status=status)


@require_POST
@login_required
def api_client_deactivate_page(request, client_id: int):
    _require_admin(request.user)
    client = get_object_or_404(ApiClient, pk=client_id)
    api_client_deactivate(actor=request.user, client=client)
    messages.success(request, _("已停用 API 客户端「%(name)s」") % {"name": client.name})
    return redirect("integrations:api_clients")
