"""A client who adds an advisor in WeCom but matches no customer waits in the review queue; resolving it
(link or create) announces the add then — a Touch, SOP journeys, the wecom.contact_added webhook — once only."""

import pytest
from django.urls import reverse

from customers.models import Touch
from customers.tests.factories import CustomerFactory
from integrations import tasks as webhook_tasks
from integrations.models import WebhookEvent
from integrations.webhooks import webhook_subscription_create
from integrations.wecom.models import CallbackEvent, ContactWay, ExternalContact
from integrations.wecom.tests.test_callback import post_event, process_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def wx_advisor(advisor):
    advisor.wecom_userid = "wx_advisor_bj"
    advisor.employee_code = advisor.employee_code or "E0001"
    advisor.save(update_fields=["wecom_userid", "employee_code"])
    return advisor


@pytest.fixture
def subscribed(monkeypatch):
    monkeypatch.setattr(webhook_tasks.webhook_deliver, "delay", lambda *args: None)
    webhook_subscription_create(actor="test", url="https://crm.example.com/hooks", event_types=["wecom.contact_added"])


@pytest.fixture
def journey(operator):
    from sop.services import journey_create, journey_publish

    definition = {"trigger": {"type": "wecom_contact_added"}, "start": "call",
                  "steps": [{"id": "call", "type": "task", "title": "新加微信的客户：电话问候", "due_hours": 24,
                             "executor": "advisor"}]}
    journey = journey_create(actor=operator, name="企微新客欢迎", definition=definition)
    journey_publish(actor=operator, journey=journey)
    return journey


def _stranger_adds(client, sb, **fields):
    added = sb.admin("contacts", {"userid": "wx_advisor_bj", "name": "陌生新客", "push": False, **fields})
    post_event(client, sb, {"Event": "change_external_contact", "ChangeType": "add_external_contact",
                            "UserID": "wx_advisor_bj", "ExternalUserID": added["external_userid"]})
    event = process_now(CallbackEvent.objects.order_by("-pk").first())
    assert event.status == "done" and "待人工关联" in event.error
    return ExternalContact.objects.get(external_userid=added["external_userid"]), event


def test_linking_a_pending_add_starts_journeys_and_the_webhook_once(
        client, operator, wx_advisor, wecom_sandbox, subscribed, journey, django_capture_on_commit_callbacks):
    customer = CustomerFactory(advisor=wx_advisor, external_id="C-WX-LATE")
    with django_capture_on_commit_callbacks(execute=True):
        contact, event = _stranger_adds(client, wecom_sandbox)
    assert contact.match_status == "unmatched" and contact.pending_add["userid"] == "wx_advisor_bj"
    assert not Touch.objects.filter(source="wecom_add").exists()
    assert not journey.enrollments.exists() and not WebhookEvent.objects.exists()

    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("wecom:review"), {"action": "link", "contact": contact.pk,
                                                         "customer": "C-WX-LATE"})
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.customer == customer and contact.pending_add == {}
    touch = Touch.objects.get(customer=customer, source="wecom_add")
    assert touch.occurred_at == event.wecom_created_at and touch.staff == wx_advisor  # dated when it happened
    assert journey.enrollments.get().customer == customer
    hook = WebhookEvent.objects.get(event_type="wecom.contact_added")
    assert hook.payload == {
        "customer": {"external_id": "C-WX-LATE", "branch": customer.branch.code, "advisor": wx_advisor.employee_code},
        "wecom": {"external_userid": contact.external_userid, "userid": "wx_advisor_bj",
                  "added_at": event.wecom_created_at.isoformat(), "match": "matched"},
        "contact_way": None}
    assert "陌生新客" not in str(hook.payload) and customer.name not in str(hook.payload)

    # once only: resolving again is refused, and a later sync that sees the contact announces nothing
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(reverse("wecom:review"), {"action": "link", "contact": contact.pk, "customer": "C-WX-LATE"})
        from integrations.wecom import sync

        assert sync.wecom_sync_run(kind="contacts", requested_by="test").status == "done"
    assert again.status_code == 400
    assert Touch.objects.filter(source="wecom_add").count() == 1
    assert journey.enrollments.count() == 1 and WebhookEvent.objects.count() == 1


def test_creating_a_customer_for_a_pending_add_announces_it_and_ignoring_does_not(
        client, admin_user, wx_advisor, wecom_sandbox, subscribed, journey, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        creating, _ = _stranger_adds(client, wecom_sandbox)
        ignoring, _ = _stranger_adds(client, wecom_sandbox)
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("wecom:review"), {"action": "create", "contact": creating.pk})
        client.post(reverse("wecom:review"), {"action": "ignore", "contact": ignoring.pk})
    creating.refresh_from_db()
    assert creating.match_status == "created" and creating.customer.advisor == wx_advisor
    assert [e.customer for e in journey.enrollments.all()] == [creating.customer]
    assert [e.payload["wecom"]["match"] for e in WebhookEvent.objects.all()] == ["created"]
    assert Touch.objects.filter(source="wecom_add").count() == 1


def test_a_pending_add_matched_by_a_later_sync_is_announced(client, wx_advisor, wecom_sandbox, subscribed,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        contact, _ = _stranger_adds(client, wecom_sandbox)
    # the advisor notes the client's mobile in WeCom; the customer record arrives from the CRM
    wecom_sandbox.follows[contact.external_userid]["wx_advisor_bj"]["remark_mobiles"] = ["13655554444"]
    customer = CustomerFactory(advisor=wx_advisor, mobile="13655554444")
    from integrations.wecom import sync

    with django_capture_on_commit_callbacks(execute=True):
        assert sync.wecom_sync_run(kind="contacts", requested_by="test").status == "done"
    contact.refresh_from_db()
    assert contact.customer == customer and contact.pending_add == {}
    assert Touch.objects.filter(customer=customer, source="wecom_add").count() == 1
    assert WebhookEvent.objects.get().payload["customer"]["external_id"] == customer.external_id


def test_an_add_through_a_contact_way_emits_the_webhook_with_the_way(client, wx_advisor, wecom_sandbox, subscribed,
                                                                    django_capture_on_commit_callbacks):
    way = ContactWay.objects.create(name="营业部讲座", channel="seminar", campaign="两融讲座", advisor=wx_advisor,
                                    state="cwlecture")
    added = wecom_sandbox.admin("contacts", {"userid": "wx_advisor_bj", "state": way.state, "push": False})
    post_event(client, wecom_sandbox, {"Event": "change_external_contact", "ChangeType": "add_external_contact",
                                       "UserID": "wx_advisor_bj", "ExternalUserID": added["external_userid"],
                                       "State": way.state})
    with django_capture_on_commit_callbacks(execute=True):
        assert process_now(CallbackEvent.objects.get()).status == "done"
    payload = WebhookEvent.objects.get(event_type="wecom.contact_added").payload
    assert payload["contact_way"] == {"id": way.pk, "state": "cwlecture", "channel": "seminar", "campaign": "两融讲座"}
    assert payload["wecom"]["match"] == "created" and payload["customer"]["external_id"].startswith("wx:")
