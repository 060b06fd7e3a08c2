"""Templates and their approval, blocked touches, the trading calendar and guard settings."""

from django.urls import path

from sop import views_compliance, views_content

urlpatterns = [
    path("templates/", views_content.template_list, name="templates"),
    path("templates/new/", views_content.template_create, name="template_create"),
    path("templates/lint/", views_content.template_lint_preview, name="template_lint"),
    path("templates/<int:sop_template_id>/", views_content.template_detail, name="template_detail"),
    path("templates/versions/<int:sop_template_version_id>/submit/", views_content.template_version_submit,
         name="template_submit"),
    path("calendar/", views_content.calendar_page, name="calendar"),
    path("calendar/day/", views_content.calendar_day_set, name="calendar_day_set"),
    path("calendar/seed/", views_content.calendar_seed_view, name="calendar_seed"),
    path("calendar/import/", views_content.calendar_import, name="calendar_import"),
    path("tasks/<int:sop_wecom_task_id>/sent/", views_content.wecom_task_sent, name="wecom_task_sent"),
    path("tasks/<int:sop_wecom_skip_task_id>/skip/", views_content.wecom_task_skip, name="wecom_task_skip"),
    path("compliance/approvals/", views_compliance.approvals, name="approvals"),
    path("compliance/approvals/<int:sop_review_version_id>/review/", views_compliance.version_review,
         name="template_review"),
    path("compliance/phrases/", views_compliance.phrases, name="phrases"),
    path("compliance/phrases/<int:sop_phrase_id>/active/", views_compliance.phrase_toggle, name="phrase_toggle"),
    path("compliance/blocked/", views_compliance.blocked, name="blocked"),
    path("compliance/blocked.csv", views_compliance.blocked_export, name="blocked_export"),
    path("compliance/guards/", views_compliance.guards, name="guards"),
]
