from django.urls import path

from customers import views

app_name = "customers"

urlpatterns = [
    path("", views.customer_list, name="list"),
    path("tasks/", views.task_inbox, name="tasks"),
    path("tasks/<int:task_id>/complete/", views.task_complete, name="task_complete"),
    path("c/<extid:external_id>/", views.customer_detail, name="detail"),
    path("c/<extid:external_id>/reveal/", views.customer_reveal, name="reveal"),
    path("c/<extid:external_id>/notes/", views.note_add, name="note_add"),
]
