"""The WeCom callback, contact ways (渠道活码) and transfers (离职继承/在职转接)."""

from django.urls import path

from integrations.wecom import views_callback, views_ops

urlpatterns: list = [
    path("callback/", views_callback.callback, name="callback"),
    path("callback/events/", views_ops.callback_events, name="callback_events"),
    path("contact-ways/", views_ops.contact_ways, name="contact_ways"),
    path("contact-ways/new/", views_ops.contact_way_create, name="contact_way_create"),
    path("contact-ways/<int:contact_way_id>/", views_ops.contact_way_detail, name="contact_way_detail"),
    path("contact-ways/<int:contact_way_id>/deactivate/", views_ops.contact_way_deactivate,
         name="contact_way_deactivate"),
    path("transfers/", views_ops.transfers, name="transfers"),
    path("transfers/new/", views_ops.transfer_create, name="transfer_create"),
    path("transfers/<int:transfer_id>/", views_ops.transfer_detail, name="transfer_detail"),
]
