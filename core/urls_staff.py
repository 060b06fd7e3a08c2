from django.urls import path

from core import staff_views

app_name = "staff"

urlpatterns = [
    path("", staff_views.staff_list_page, name="list"),
    path("new/", staff_views.staff_create_page, name="create"),
    path("<int:user_id>/", staff_views.staff_edit_page, name="edit"),
    path("<int:user_id>/deactivate/", staff_views.staff_deactivate_action, name="deactivate"),
    path("<int:user_id>/activate/", staff_views.staff_activate_action, name="activate"),
    path("<int:user_id>/password/", staff_views.staff_password_reset_action, name="password_reset"),
    path("<int:user_id>/unlock/", staff_views.staff_unlock_action, name="unlock"),
]
