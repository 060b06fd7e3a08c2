from django.apps import AppConfig


class SopConfig(AppConfig):
    name = "sop"
    verbose_name = "SOP 旅程"

    def ready(self):
        from sop.triggers import subscriptions

        subscriptions()
