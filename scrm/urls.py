from django.contrib import admin
from django.urls import include, path, re_path

from core import views as core_views
from customers import views as customer_views

handler400 = "core.views.error_400"
handler403 = "core.views.error_403"
handler404 = "core.views.error_404"
handler500 = "core.views.error_500"

urlpatterns = [
    path("", customer_views.workbench, name="home"),
    path("customers/", include("customers.urls")),
    path("customers/", include("customers.urls_import")),
    path("tags/", include("tagging.urls")),
    path("compliance/", include("core.urls_compliance")),
    path("settings/users/", include("core.urls_staff")),
    path("healthz", core_views.healthz, name="healthz"),
    path("accounts/", include("core.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("segments/", include("segments.urls")),
    path("groups/", include("groups.urls")),
    path("sop/", include("sop.urls")),
    path("dashboards/", include("dashboards.urls")),
    path("integrations/wecom/", include("integrations.wecom.urls")),
    path("integrations/", include("integrations.urls")),
    path("api/v1/", include("integrations.api.urls")),
    re_path(r"^api/", core_views.api_not_found, name="api_not_found"),  # unknown API routes: 404 in the API shape
]
