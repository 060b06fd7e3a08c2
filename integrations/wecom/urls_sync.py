"""Sync runs and the contact review queue."""

urlpatterns: list = []
