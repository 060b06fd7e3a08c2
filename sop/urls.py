"""SOP pages: journeys (list, editor, results) and their content (templates, approvals, calendar, guards)."""

from sop import urls_content, urls_journeys

app_name = "sop"

urlpatterns = [*urls_journeys.urlpatterns, *urls_content.urlpatterns]
