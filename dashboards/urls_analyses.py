"""Analyses: opening funnel, retention cohorts, magic number, channels."""

urlpatterns = []
