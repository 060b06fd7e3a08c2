from django.urls import path

from groups import views

app_name = "groups"
urlpatterns = [
    path("", views.group_list, name="list"),
    path("purposes/", views.group_purposes, name="purposes"),
    path("<int:group_id>/", views.group_detail, name="detail"),
    path("<int:group_id>/edit/", views.group_edit, name="edit"),
    path("<int:group_id>/invite/", views.group_invite, name="invite"),
    path("<int:group_id>/join-way/", views.group_join_way, name="join_way"),
]
