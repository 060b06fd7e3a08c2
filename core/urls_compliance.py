from django.urls import path

from core import compliance_views

app_name = "compliance"

urlpatterns = [
    path("", compliance_views.compliance_index, name="index"),
    path("audit.csv", compliance_views.audit_export, name="audit_export"),
]
