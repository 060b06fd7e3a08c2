"""价值分层 URLs; tagging/urls.py includes them (namespace "tagging"), so they live under /tags/."""

from django.urls import path

from tagging import views_tiers

urlpatterns = [
    path("tiers/", views_tiers.tier_page, name="tiers"),
    path("tiers/runs/<int:run_id>/", views_tiers.tier_run_status, name="tier_run_status"),
    path("tiers/<slug:code>/strategy/", views_tiers.tier_strategy_edit, name="tier_strategy_edit"),
]
