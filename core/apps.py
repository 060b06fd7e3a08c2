from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "平台"

    def ready(self):
        from core.converters import converters_register

        converters_register()

        from core.logging import uvicorn_redact_install

        uvicorn_redact_install()
