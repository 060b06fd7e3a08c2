"""The real-time dashboard (tiles pushed over server-sent events)."""

urlpatterns = []
