from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "集成"

    def ready(self):
        from integrations.webhook_emitters import subscriptions

        # webhooks: customer / tag / tier / task changes become outbox events (after commit)
        subscriptions()
