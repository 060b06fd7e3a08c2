"""Journey pages: list, flow editor, dry-run, publish, per-step results."""

from django.urls import path

from sop import views_journeys as v

urlpatterns = [
    path("", v.journey_list, name="list"),
    path("journeys/new/", v.journey_create, name="journey_create"),
    path("journeys/<int:sop_journey_id>/", v.journey_edit, name="journey_edit"),
    path("journeys/<int:sop_journey_id>/flow/", v.journey_flow, name="journey_flow"),
    path("journeys/<int:sop_journey_id>/trigger/", v.journey_trigger, name="journey_trigger"),
    path("journeys/<int:sop_journey_id>/settings/", v.journey_settings, name="journey_settings"),
    path("journeys/<int:sop_journey_id>/steps/new/", v.journey_step_new, name="journey_step_new"),
    path("journeys/<int:sop_journey_id>/steps/<str:sop_step_id>/", v.journey_step, name="journey_step"),
    path("journeys/<int:sop_journey_id>/steps/<str:sop_step_id>/delete/", v.journey_step_delete, name="journey_step_delete"),
    path("journeys/<int:sop_journey_id>/json/", v.journey_json, name="journey_json"),
    path("journeys/<int:sop_journey_id>/publish/", v.journey_publish, name="journey_publish"),
    path("journeys/<int:sop_journey_id>/status/", v.journey_status, name="journey_status"),
    path("journeys/<int:sop_journey_id>/dry-run/", v.journey_dry_run, name="journey_dry_run"),
    path("journeys/<int:sop_journey_id>/results/", v.journey_results, name="journey_results"),
    path("step-runs/<int:sop_step_run_id>/retry/", v.step_run_retry, name="journey_step_run_retry"),
]
