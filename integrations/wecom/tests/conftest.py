"""Fixtures for the WeCom tests (sync, callbacks, contact ways, transfers, groups).

``wecom_sandbox``: the local WeCom sandbox (integrations/wecom/sandbox.py) on a free port, with
settings.WECOM_API_BASE_URL / CORP_ID / SECRET / CALLBACK_TOKEN / CALLBACK_AES_KEY pointing at it.
It yields the ``WecomSandbox`` object: ``.url``, ``.admin("contacts", {...})`` (POST /sandbox/…),
``.state()`` (GET /sandbox/state), ``.reseed_from_db()`` (rebuild its corp from the customers and
advisors the test created), and the data itself (``.contacts``, ``.follows``, ``.groupchats`` …).
Its seed without ``reseed_from_db()``: the six demo advisor userids (wx_advisor_bj …) following 40
contacts that match no customer.

``wecom_sandbox_callbacks``: the same, plus ``live_server``: the sandbox pushes its callbacks to
``<live_server>/integrations/wecom/callback/``.

The session-wide ``celery_worker`` subprocess does not see these per-test settings: call task bodies
directly (``wecom_sync(...)``) or the services instead.
"""

import pytest

from integrations.wecom import sandbox as wecom_sandbox_module
from integrations.wecom.sandbox_seed import sandbox_seed_from_db


@pytest.fixture
def wecom_sandbox(settings):
    sandbox, server = wecom_sandbox_module.sandbox_serve()
    settings.WECOM_API_BASE_URL = sandbox.url
    settings.WECOM_CORP_ID = sandbox.corp_id
    settings.WECOM_SECRET = sandbox.secret
    settings.WECOM_CALLBACK_TOKEN = sandbox.token
    settings.WECOM_CALLBACK_AES_KEY = sandbox.aes_key

    def reseed_from_db(customers: int = 300) -> dict:
        seed = sandbox_seed_from_db(customers=customers)
        sandbox.reset(seed)
        return seed

    sandbox.reseed_from_db = reseed_from_db
    yield sandbox
    server.shutdown()
    server.server_close()


@pytest.fixture
def wecom_sandbox_callbacks(wecom_sandbox, live_server):
    wecom_sandbox.callback_url = f"{live_server.url}/integrations/wecom/callback/"
    return wecom_sandbox
