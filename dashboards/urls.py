"""The live dashboard and the analyses."""

from dashboards import urls_analyses, urls_live, urls_people

app_name = "dashboards"

urlpatterns = [*urls_live.urlpatterns, *urls_analyses.urlpatterns, *urls_people.urlpatterns]
