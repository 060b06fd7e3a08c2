from django.urls import path

from customers import views, views_custom_fields

app_name = "customers"

urlpatterns = [
    path("", views.customer_list, name="list"),
    path("tasks/", views.task_inbox, name="tasks"),
    path("tasks/<int:task_id>/complete/", views.task_complete, name="task_complete"),
    path("c/<extid:external_id>/", views.customer_detail, name="detail"),
    path("c/<extid:external_id>/reveal/", views.customer_reveal, name="reveal"),
    path("c/<extid:external_id>/notes/", views.note_add, name="note_add"),
    path("c/<extid:external_id>/custom-fields/", views_custom_fields.customer_custom_fields, name="custom_fields"),
    path("fields/", views_custom_fields.custom_field_list, name="custom_field_list"),
    path("fields/new/", views_custom_fields.custom_field_create, name="custom_field_create"),
    path("fields/<int:field_id>/", views_custom_fields.custom_field_edit, name="custom_field_edit"),
    path("fields/<int:field_id>/active/", views_custom_fields.custom_field_active, name="custom_field_active"),
]
