"""Analyses about people and results: churn warning, advisor follow-up, SOP roll-up."""

from django.urls import path

from dashboards import views_people

urlpatterns = [
    path("analyses/churn/", views_people.churn_page, name="churn"),
    path("analyses/churn.csv", views_people.churn_csv, name="churn_csv"),
    path("analyses/churn/tasks/", views_people.churn_tasks, name="churn_tasks"),
    path("analyses/churn/enroll/", views_people.churn_enroll, name="churn_enroll"),
    path("analyses/churn/refresh/", views_people.churn_refresh, name="churn_refresh"),
    path("analyses/advisors/", views_people.advisors_page, name="advisors"),
    path("analyses/advisors.csv", views_people.advisors_csv, name="advisors_csv"),
    path("analyses/people/refresh/", views_people.summaries_refresh, name="people_refresh"),
    path("analyses/sop/", views_people.sop_rollup_page, name="sop_rollup"),
    path("analyses/sop.csv", views_people.sop_rollup_csv, name="sop_rollup_csv"),
]
