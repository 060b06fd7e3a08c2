"""The live dashboard's URLs for tests/test_scope.py: both show numbers of the viewer's own scope only."""

PAGES_WITHOUT_OBJECTS = {"dashboards:index", "dashboards:live_stream"}
OBJECT_KWARGS: dict = {}
