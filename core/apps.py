from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "平台"

    def ready(self):
        from core.converters import converters_register

        converters_register()

        from core.logging import uvicorn_redact_install

        uvicorn_redact_install()

        from axes.signals import user_locked_out

        from core.staff_services import staff_lockout_record

        user_locked_out.connect(staff_lockout_record, dispatch_uid="core.staff_lockout_record")
