"""Journey pages: list, flow editor, dry-run, publish, per-step results."""

urlpatterns = []
