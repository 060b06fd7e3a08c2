"""Analyses about people and results: churn warning, advisor follow-up, SOP roll-up."""

urlpatterns = []
