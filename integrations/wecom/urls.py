"""/integrations/wecom/ (namespace "wecom"): sync runs and the review queue (urls_sync), the callback,
contact ways and transfers (urls_ops)."""

from integrations.wecom import urls_ops, urls_sync

app_name = "wecom"
urlpatterns = [*urls_sync.urlpatterns, *urls_ops.urlpatterns]
