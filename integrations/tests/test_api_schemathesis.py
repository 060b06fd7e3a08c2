"""Schemathesis against the live server with every check it has (``--checks all``): no 5xx, and every answer
conforms to /api/v1/schema/ — status codes, content types, headers, bodies — valid data is accepted, invalid
data refused, auth enforced. Fixed seed, bounded examples per operation (integrations/tests/schemathesis.toml)."""

import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]  # the config names its hooks as a module of the project


@pytest.fixture
def live_api(live_server, transactional_db):
    """The rows the config's dictionaries name: customers BJ-1 and BJ-2, product 510300, tags margin_intent and
    novice, segment 9001 (members BJ-1), BJ-1's tier, and a key with every scope."""
    from core.models import Branch
    from customers.tests.factories import CustomerFactory, ProductFactory
    from integrations.api_clients import api_client_create
    from integrations.tests.api_support import ALL_SCOPES
    from segments.models import Segment, SegmentMember
    from tagging.models import CustomerTier, Tag, TagCategory

    branch = Branch.objects.create(code="BJ01", name="北京营业部")
    first = CustomerFactory(external_id="BJ-1", branch=branch)
    CustomerFactory(external_id="BJ-2", branch=branch)
    ProductFactory(code="510300")
    category, _ = TagCategory.objects.get_or_create(code="opportunity", defaults={"name": "商机", "kind": "opportunity"})
    for code, name in (("margin_intent", "两融意向"), ("novice", "投资小白")):
        Tag.objects.get_or_create(code=code, defaults={"name": name, "category": category})
    rule = {"op": "and", "rules": [{"type": "risk_level", "op": "in", "value": ["C3"]}]}
    segment = Segment.objects.create(pk=9001, name="稳健客户", rule=rule, member_count=1)
    SegmentMember.objects.create(segment=segment, customer=first)
    CustomerTier.objects.create(customer=first, code="important_value", r=10, f=3, m=Decimal("50000.00"),
                                as_of=date(2026, 1, 1))
    _client, key = api_client_create(actor=None, name="fuzz", scopes=ALL_SCOPES, rate_limit_per_minute=100_000)
    return live_server.url, key


def test_every_schemathesis_check_passes(live_api, tmp_path):
    base_url, key = live_api
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
               f"{base_url}/api/v1/schema/", "--checks", "all", "--no-color",
               "--report", "junit,har", "--report-dir", os.environ.get("SCHEMATHESIS_REPORTS", str(tmp_path))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT,
                            env={**os.environ, "SCRM_SCHEMATHESIS_KEY": key})
    Path(os.environ.get("SCHEMATHESIS_LOG", tmp_path / "st.log")).write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-30000:] + result.stderr[-3000:]
