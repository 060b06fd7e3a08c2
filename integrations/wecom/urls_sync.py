"""Sync runs and the contact review queue."""

from django.urls import path

from integrations.wecom import views_sync

urlpatterns: list = [
    path("", views_sync.sync_runs_page, name="sync_runs"),
    path("runs/", views_sync.sync_runs_table, name="sync_runs_table"),
    path("review/", views_sync.review_page, name="review"),
]
