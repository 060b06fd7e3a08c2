"""Fixtures of the REST API tests (integrations/tests/api_support.py), for every test module here."""

from integrations.tests.api_support import api, branches, make_api_client  # noqa: F401
