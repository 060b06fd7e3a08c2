"""Schemathesis against the live server: generated valid and invalid requests for every operation in
/api/v1/schema/ never get a 5xx. Bounded to a few examples per operation (well under a minute)."""

import time

import pytest
from hypothesis import HealthCheck, given, settings

pytestmark = [pytest.mark.slow]

EXAMPLES_PER_OPERATION = 8


@pytest.fixture
def live_api(live_server, transactional_db):
    from core.models import Branch
    from customers.tests.factories import CustomerFactory, ProductFactory
    from integrations.api_clients import api_client_create
    from integrations.tests.api_support import ALL_SCOPES

    branch = Branch.objects.create(code="BJ01", name="北京营业部")
    CustomerFactory(external_id="BJ-1", branch=branch)
    ProductFactory(code="510300")
    _client, key = api_client_create(actor=None, name="fuzz", scopes=ALL_SCOPES, rate_limit_per_minute=100_000)
    return live_server.url, {"Authorization": f"Bearer {key}"}


def test_no_operation_answers_5xx(live_api):
    import schemathesis
    from schemathesis import GenerationMode

    base_url, headers = live_api
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    started = time.monotonic()
    server_errors, statuses = [], []
    for operation in operations:
        known = {name: value for name, value in (("external_id", "BJ-1"), ("tag_code", "margin_intent"))
                 if f"{{{name}}}" in operation.path}
        strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
        if known:
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
        for strategy in strategies:

            @given(case=strategy)
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    server_errors.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
                                         f" → {response.status_code}")
                elif response.status_code >= 400 and response.content:
                    body = response.json()
                    assert set(body) == {"error"}, (case.method, case.formatted_path, body)

            run()
    assert server_errors == []
    assert len(statuses) >= 10 * len(operations) and any(s < 300 for s in statuses)
    assert time.monotonic() - started < 120
