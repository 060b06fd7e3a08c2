from django.urls import path

from tagging import urls_conversation, urls_tiers, views

app_name = "tagging"

urlpatterns = [
    path("", views.index, name="index"),
    path("t/<slug:code>/", views.index, name="tag"),
    path("t/<slug:code>/save/", views.tag_save, name="tag_save"),
    path("new/", views.tag_save, name="tag_create"),
    path("categories/new/", views.category_save, name="category_create"),
    path("t/<slug:code>/rule/preview/", views.rule_preview, name="rule_preview"),
    path("t/<slug:code>/rule/", views.rule_save, name="rule_save"),
    path("customer/<extid:external_id>/", views.customer_tags, name="customer_tags"),
    path("customer/<extid:external_id>/add/", views.customer_tag_add, name="customer_tag_add"),
    path("customer/<extid:external_id>/remove/<slug:tag_code>/", views.customer_tag_remove, name="customer_tag_remove"),
    path("bulk/", views.bulk_tag, name="bulk"),
    *urls_conversation.urlpatterns,
    *urls_tiers.urlpatterns,
]
