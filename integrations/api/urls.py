"""/api/v1/ (namespace "api"). Webhook routes are added by integrations/api/webhook_views.py's owner
below the marked line."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from integrations.api import views, views_segments, webhook_views

app_name = "api"

urlpatterns = [
    path("customers/", views.CustomerListApi.as_view(), name="customer_list"),
    path("customers/bulk_upsert/", views.CustomerBulkUpsertApi.as_view(), name="customer_bulk_upsert"),
    path("customers/<extid:external_id>/", views.CustomerDetailApi.as_view(), name="customer_detail"),
    path("customers/<extid:external_id>/tags/", views.CustomerTagListApi.as_view(), name="customer_tags"),
    path("customers/<extid:external_id>/tags/<str:tag_code>/", views.CustomerTagDeleteApi.as_view(),
         name="customer_tag_delete"),
    path("customers/<extid:external_id>/tier/", views.CustomerTierApi.as_view(), name="customer_tier"),
    path("trades/bulk/", views.TradeBulkApi.as_view(), name="trade_bulk"),
    path("events/bulk/", views.EventBulkApi.as_view(), name="event_bulk"),
    path("products/", views.ProductListApi.as_view(), name="product_list"),
    path("products/bulk_upsert/", views.ProductBulkUpsertApi.as_view(), name="product_bulk_upsert"),
    path("tags/", views.TagListApi.as_view(), name="tag_list"),
    path("custom-fields/", views.CustomFieldListApi.as_view(), name="custom_field_list"),
    path("tiers/", views.TierOverviewApi.as_view(), name="tier_overview"),
    path("segments/", views_segments.SegmentListApi.as_view(), name="segment_list"),
    path("segments/preview/", views_segments.SegmentPreviewApi.as_view(), name="segment_preview"),
    path("segments/<int:segment_id>/members/", views_segments.SegmentMembersApi.as_view(), name="segment_members"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves Swagger UI's start-up script as its own file (?script): no inline script under the CSP
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # --- webhooks (integrations/api/webhook_views.py) ---
    path("webhooks/", webhook_views.WebhookListApi.as_view(), name="webhooks"),
    path("webhooks/<int:subscription_id>/", webhook_views.WebhookDetailApi.as_view(), name="webhook_detail"),
]
