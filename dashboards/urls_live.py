"""The real-time dashboard (tiles pushed over server-sent events)."""

from django.urls import path

from dashboards import views_live

urlpatterns = [
    path("", views_live.index, name="index"),
    path("live/stream/", views_live.live_stream, name="live_stream"),
]
