"""Analyses: opening funnel, retention cohorts, magic number, channels."""

from django.urls import path

from dashboards import views_analyses as views

urlpatterns = [
    path("analyses/funnel/", views.funnel_page, name="analyses_funnel"),
    path("analyses/funnel.csv", views.funnel_page, {"as_csv": True}, name="analyses_funnel_csv"),
    path("analyses/funnel/dropouts/", views.funnel_dropouts, name="analyses_funnel_dropouts"),
    path("analyses/cohorts/", views.cohorts_page, name="analyses_cohorts"),
    path("analyses/cohorts.csv", views.cohorts_page, {"as_csv": True}, name="analyses_cohorts_csv"),
    path("analyses/magic/", views.magic_page, name="analyses_magic"),
    path("analyses/magic.csv", views.magic_page, {"as_csv": True}, name="analyses_magic_csv"),
    path("analyses/channels/", views.channels_page, name="analyses_channels"),
    path("analyses/channels.csv", views.channels_page, {"as_csv": True}, name="analyses_channels_csv"),
    path("analyses/refresh/", views.refresh_request, name="analyses_refresh"),
]
