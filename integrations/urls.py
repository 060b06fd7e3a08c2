"""Integration pages for admins under /integrations/ (namespace "integrations")."""

from django.urls import include, path

from integrations import views_api_clients

app_name = "integrations"

urlpatterns = [
    path("", views_api_clients.integrations_index, name="index"),
    path("api-clients/", views_api_clients.api_client_list_page, name="api_clients"),
    path("api-clients/<int:client_id>/deactivate/", views_api_clients.api_client_deactivate_page,
         name="api_client_deactivate"),
    path("", include("integrations.urls_webhooks")),
]
