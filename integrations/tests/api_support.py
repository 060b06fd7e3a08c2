"""Fixtures for the REST API tests: API clients with keys, and a test client that sends the key."""

import json

import pytest

from integrations.models import ApiScope

ALL_SCOPES = [s.value for s in ApiScope]


class Api:
    """The Django test client with ``Authorization: Bearer <key>`` and JSON bodies."""

    def __init__(self, client, key: str | None):
        self.client, self.key = client, key

    def _headers(self):
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"} if self.key else {}

    def get(self, path, params=None):
        return self.client.get(path, params or {}, **self._headers())

    def post(self, path, body=None, raw: bytes | str | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", **self._headers())

    def patch(self, path, body):
        return self.client.patch(path, json.dumps(body), content_type="application/json", **self._headers())

    def delete(self, path):
        return self.client.delete(path, **self._headers())


@pytest.fixture
def make_api_client(db, client):
    from core.models import Branch
    from integrations.api_clients import api_client_create

    def make(name="crm", scopes=None, branch_code=None, rate=600):
        if branch_code:
            Branch.objects.get_or_create(code=branch_code, defaults={"name": f"{branch_code} 营业部"})
        if scopes is None:
            from integrations.models import FIRM_WIDE_SCOPES

            scopes = [s for s in ALL_SCOPES if not (branch_code and s in FIRM_WIDE_SCOPES)]
        api_client, key = api_client_create(actor=None, name=name, scopes=scopes,
                                            branch_code=branch_code, rate_limit_per_minute=rate)
        return api_client, Api(client, key)

    return make


@pytest.fixture
def api(make_api_client):
    """A firm-wide client with every scope."""
    return make_api_client()[1]


@pytest.fixture
def branches(db):
    from core.models import Branch

    bj, _ = Branch.objects.get_or_create(code="BJ01", defaults={"name": "北京营业部"})
    sh, _ = Branch.objects.get_or_create(code="SH01", defaults={"name": "上海营业部"})
    return {"BJ01": bj, "SH01": sh}


def error_of(response) -> dict:
    """The ``error`` object of an answer, after checking it has the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
