from datetime import timedelta

import pytest

from customers.tests.factories import CustomerFactory
from sop.tests.test_engine import NOON


@pytest.fixture
def provider(settings):
    """The SMS/push provider sandbox over real HTTP, with settings pointing at it."""
    from sop.provider_sandbox import sandbox_serve

    sandbox, server = sandbox_serve(token="t0k")
    settings.MESSAGING_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.MESSAGING_API_TOKEN = "t0k"
    sandbox.url = settings.MESSAGING_BASE_URL
    yield sandbox
    server.shutdown()
    server.server_close()


@pytest.fixture
def sop_kit(db, advisor, operator, compliance):
    """Approved templates and a helper to publish a journey."""
    from customers.models import Product
    from sop.services import journey_create, journey_publish
    from sop.templates_lint import template_review, template_save

    def approved(name, channel, body, product=None):
        version = template_save(actor=operator, template=None, name=name, channel=channel, body=body, product=product)
        return template_review(actor=compliance, version=version, approve=True)

    fund = Product.objects.create(code="OF_R4", name="成长混合基金", type="fund", risk_level="R4")
    kit = {
        "sms": approved("欢迎短信", "sms", "{name}您好，我是您的投顾{advisor}。"),
        "fund_sms": approved("基金推荐", "sms", "{name}您好，{product}正在发售。投资有风险，入市需谨慎。", fund),
        "wecom": approved("企微问候", "wecom", "{name}您好，有问题随时找我。"),
        "fund": fund,
    }

    def publish(steps, trigger=None, start=None, **extra):
        definition = {"trigger": trigger or {"type": "manual"}, "start": start or steps[0]["id"], "steps": steps,
                      **extra}
        journey = journey_create(actor=operator, name=extra.pop("name", "测试旅程"), definition=definition)
        journey_publish(actor=operator, journey=journey)
        journey.refresh_from_db()
        return journey

    kit["publish"] = publish
    return kit


@pytest.fixture
def client_of(advisor):
    def make(n=0, **kwargs):
        mobile = kwargs.pop("mobile", f"1390000{n:04d}")
        kwargs.setdefault("risk_level", "C3")
        kwargs.setdefault("risk_assessed_at", NOON.date() - timedelta(days=30))  # the engine runs at NOON
        return CustomerFactory(advisor=advisor, mobile=mobile, **kwargs)

    return make
