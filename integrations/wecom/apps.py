from django.apps import AppConfig


class WecomConfig(AppConfig):
    name = "integrations.wecom"
    label = "wecom"
    verbose_name = "企业微信"

    def ready(self):
        from integrations.wecom.webhook_events import subscriptions

        # the wecom.contact_added webhook (SOP registers its journeys in sop.apps); synced tags changed by hand → WeCom
        subscriptions()
