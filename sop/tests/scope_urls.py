"""Collects each part's scope registrations for tests/test_scope.py."""

import importlib

PAGES_WITHOUT_OBJECTS: set = set()
OBJECT_KWARGS: dict = {}

for _part in ("journeys", "content"):
    try:
        _module = importlib.import_module(f"sop.tests.scope_urls_{_part}")
    except ModuleNotFoundError as exc:
        if exc.name != f"sop.tests.scope_urls_{_part}":
            raise
        continue
    PAGES_WITHOUT_OBJECTS |= getattr(_module, "PAGES_WITHOUT_OBJECTS", set())
    OBJECT_KWARGS.update(getattr(_module, "OBJECT_KWARGS", {}))
