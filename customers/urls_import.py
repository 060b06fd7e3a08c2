from django.urls import path

from customers import views_import

app_name = "customers_import"

urlpatterns = [
    path("import/", views_import.import_upload, name="upload"),
    path("import/template.csv", views_import.import_template_csv, name="template"),
    path("import/<int:job_id>/", views_import.import_job_detail, name="job"),
    path("import/<int:job_id>/confirm/", views_import.import_job_confirm, name="confirm"),
    path("import/<int:job_id>/errors.csv", views_import.import_errors_csv, name="errors"),
]
