"""Webhook and CRM sync pages; integrations/urls.py (namespace "integrations", mounted at /integrations/) includes them."""

from django.urls import path

from integrations import views_crm, views_webhooks

urlpatterns = [
    path("webhooks/", views_webhooks.webhook_list, name="webhooks"),
    path("webhooks/<int:subscription_id>/", views_webhooks.webhook_detail, name="webhook_detail"),
    path("webhooks/<int:subscription_id>/delete/", views_webhooks.webhook_delete, name="webhook_delete"),
    path("webhooks/<int:subscription_id>/resume/", views_webhooks.webhook_resume, name="webhook_resume"),
    path("webhooks/deliveries/<int:delivery_id>/redeliver/", views_webhooks.webhook_redeliver,
         name="webhook_redeliver"),
    path("crm/", views_crm.crm_page, name="crm"),
]
