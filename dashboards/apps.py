from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "dashboards"
    verbose_name = "看板"

    def ready(self):
        from dashboards.analyses.funnel import signup_rule_register
        from dashboards.live import subscriptions

        # segments gain "signed up between" so the funnel's drop-outs of a period can be saved as a segment
        signup_rule_register()
        # the live dashboard's counters follow trades, events, customers, tasks, WeCom contacts, SOP and tags
        subscriptions()
