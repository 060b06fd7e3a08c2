from django.urls import path

from segments import views, views_detail, views_tag_rules

app_name = "segments"

urlpatterns = [
    path("", views.segment_list, name="list"),
    path("new/", views.segment_create, name="create"),
    path("builder/", views.builder_update, name="builder"),
    path("rule-schema.json", views.rule_schema, name="rule_schema"),
    path("tag-rules/<slug:code>/", views_tag_rules.tag_rule_edit, name="tag_rule_edit"),
    path("<int:segment_id>/", views_detail.segment_detail, name="detail"),
    path("<int:segment_id>/edit/", views.segment_edit, name="edit"),
    path("<int:segment_id>/rebuild/", views_detail.segment_rebuild, name="rebuild"),
    path("<int:segment_id>/rebuild/status/", views_detail.segment_rebuild_status, name="rebuild_status"),
    path("<int:segment_id>/snapshots/", views_detail.snapshot_create, name="snapshot_create"),
    path("<int:segment_id>/diff/", views_detail.segment_diff, name="diff"),
    path("<int:segment_id>/exports/", views_detail.export_create, name="export_create"),
    path("<int:segment_id>/actions/", views_detail.action_create, name="action_create"),
    path("<int:segment_id>/archive/", views_detail.segment_archive, name="archive"),
    path("exports/<int:export_id>/", views_detail.export_status, name="export_status"),
    path("exports/<int:export_id>/download/", views_detail.export_download, name="export_download"),
    path("actions/<int:segment_action_id>/", views_detail.action_status, name="action_status"),
]
