"""Webhook pages (admins only; subscriptions are firm-wide, so everyone else gets 404):
the subscription list with the create form, one subscription's delivery log, 重新投递, delete."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from core.access import require
from core.errors import ApplicationError
from core.forms import form_add_application_error
from integrations import webhooks
from integrations.models import WebhookDelivery, WebhookSubscription


class WebhookSubscriptionForm(forms.Form):
    """Only the shape; the rules live in webhooks.webhook_subscription_create."""

    name = forms.CharField(label=gettext_lazy("名称"), required=False, max_length=100,
                           widget=forms.TextInput(attrs={"class": "form-control", "placeholder": "ERP"}))
    url = forms.CharField(label=gettext_lazy("回调地址"), max_length=500,
                          widget=forms.URLInput(attrs={"class": "form-control",
                                                       "placeholder": "https://erp.example.com/scrm/webhook"}))
    event_types = forms.MultipleChoiceField(label=gettext_lazy("事件类型"), choices=webhooks.WebhookEventType.choices,
                                            widget=forms.CheckboxSelectMultiple, required=False)
    secret = forms.CharField(label=gettext_lazy("签名密钥"), required=False, max_length=200,
                             help_text=gettext_lazy("留空则自动生成；密钥只在创建后显示一次"),
                             widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}))


def require_admin(user) -> None:
    require(user, "integrations")


def subscription_get_for_user(*, user, subscription_id: int) -> WebhookSubscription:
    require_admin(user)
    return get_object_or_404(WebhookSubscription, pk=subscription_id)


def delivery_get_for_user(*, user, delivery_id: int) -> WebhookDelivery:
    require_admin(user)
    return get_object_or_404(WebhookDelivery.objects.select_related("subscription"), pk=delivery_id)


def _list_context(form, new_secret=None, new_subscription=None) -> dict:
    subscriptions = list(webhooks.webhook_subscription_list(firm_wide=True))
    counts = webhooks.webhook_delivery_counts(subscription_ids=[s.pk for s in subscriptions])
    labels = dict(webhooks.WebhookEventType.choices)
    for s in subscriptions:
        s.counts = counts.get(s.pk, {})
        s.event_labels = [labels.get(t, t) for t in s.event_types]
    return {"form": form, "subscriptions": subscriptions, "new_secret": new_secret,
            "new_subscription": new_subscription, "now": timezone.now()}


@login_required
def webhook_list(request):
    """GET: subscriptions and the create form. POST: create; the answer shows the secret once."""
    require_admin(request.user)
    if request.method == "POST":
        form = WebhookSubscriptionForm(request.POST)
        if form.is_valid():
            try:
                subscription, secret = webhooks.webhook_subscription_create(
                    actor=request.user, name=form.cleaned_data["name"], url=form.cleaned_data["url"],
                    event_types=form.cleaned_data["event_types"], secret=form.cleaned_data["secret"])
            except ApplicationError as exc:
                form_add_application_error(form, exc)
            else:
                return render(request, "integrations/webhooks.html",
                              _list_context(WebhookSubscriptionForm(), secret, subscription))
        return render(request, "integrations/webhooks.html", _list_context(form), status=400)
    return render(request, "integrations/webhooks.html", _list_context(WebhookSubscriptionForm()))


@login_required
def webhook_detail(request, subscription_id: int):
    subscription = subscription_get_for_user(user=request.user, subscription_id=subscription_id)
    labels = dict(webhooks.WebhookEventType.choices)
    deliveries = list(webhooks.webhook_delivery_list(subscription=subscription))
    for delivery in deliveries:
        delivery.event_label = labels.get(delivery.event.event_type, delivery.event.event_type)
    return render(request, "integrations/webhook_detail.html", {
        "subscription": subscription, "deliveries": deliveries, "max_attempts": webhooks.MAX_ATTEMPTS,
        "event_labels": [labels.get(t, t) for t in subscription.event_types],
    })


@require_POST
@login_required
def webhook_delete(request, subscription_id: int):
    subscription = subscription_get_for_user(user=request.user, subscription_id=subscription_id)
    webhooks.webhook_subscription_delete(actor=request.user, subscription=subscription)
    messages.success(request, _("已删除 Webhook「%(name)s」") % {"name": subscription.name})
    return redirect("integrations:webhooks")


@require_POST
@login_required
def webhook_redeliver(request, delivery_id: int):
    delivery = delivery_get_for_user(user=request.user, delivery_id=delivery_id)
    webhooks.webhook_delivery_redeliver(actor=request.user, delivery=delivery)
    messages.success(request, _("投递 #%(id)s 已重新排队") % {"id": delivery.pk})
    return redirect("integrations:webhook_detail", subscription_id=delivery.subscription_id)


@login_required
@require_POST
def webhook_resume(request, subscription_id: int):
    subscription = subscription_get_for_user(user=request.user, subscription_id=subscription_id)
    webhooks.webhook_subscription_resume(actor=request.user, subscription=subscription)
    messages.success(request, _("已恢复向「%(name)s」投递") % {"name": subscription.name})
    return redirect("integrations:webhooks")
