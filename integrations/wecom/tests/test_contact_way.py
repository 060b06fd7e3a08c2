"""Contact ways (渠道活码): created in WeCom and here together, deactivated, and a client who adds the
advisor through one is attributed to its channel, tagged, welcomed, recorded as a Touch, and announced."""

import pytest

from core.models import AuditLog
from customers.models import Customer, Touch
from customers.tests.factories import CustomerFactory
from integrations.wecom.models import CallbackEvent, ContactWay, ExternalContact
from integrations.wecom.tests.test_callback import process_now
from tagging.models import CustomerTag, Tag

NEW = "/integrations/wecom/contact-ways/new/"


@pytest.fixture
def wecom_advisor(make_staff):
    return make_staff("advisor_wx", "advisor", "BJ01", employee_code="E9101", wecom_userid="wx_advisor_bj",
                      display_name="王磊")


def _form(advisor, **overrides):
    data = {"name": "抖音直播间 3 月", "channel": "douyin", "campaign": "两融直播", "advisor": advisor.pk,
            "tags": [Tag.objects.get(code="margin_intent").pk], "welcome_message": "您好，我是您的投顾王磊。"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db
def test_operator_creates_a_contact_way_in_wecom_and_here(client, operator, wecom_sandbox, wecom_advisor):
    client.force_login(operator)
    response = client.post(NEW, _form(wecom_advisor))
    way = ContactWay.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/integrations/wecom/contact-ways/{way.pk}/"
    assert way.config_id and way.qr_code.startswith(f"{wecom_sandbox.url}/sandbox/qr/") and way.branch == wecom_advisor.branch
    assert len(way.state) <= 30 and list(way.tags.values_list("code", flat=True)) == ["margin_intent"]
    in_wecom = {w["config_id"]: w for w in wecom_sandbox.state()["contact_ways"]}[way.config_id]
    assert (in_wecom["type"], in_wecom["scene"], in_wecom["state"], in_wecom["user"]) == (
        1, 2, way.state, ["wx_advisor_bj"])
    assert AuditLog.objects.filter(action="wecom.contact_way_create", target_id=str(way.pk)).exists()

    page = client.get("/integrations/wecom/contact-ways/").content.decode()
    assert "抖音直播间 3 月" in page and "两融意向" in page
    detail = client.get(f"/integrations/wecom/contact-ways/{way.pk}/").content.decode()
    assert way.qr_code in detail and way.state in detail


@pytest.mark.django_db
def test_the_form_says_which_field_is_wrong_and_stores_nothing(client, operator, wecom_sandbox, wecom_advisor,
                                                             advisor):
    client.force_login(operator)
    response = client.post(NEW, _form(wecom_advisor, name="", channel=""))
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"name", "channel"}
    # an advisor without a WeCom account cannot receive clients through a QR code
    response = client.post(NEW, _form(advisor))
    assert response.status_code == 400 and "未绑定企业微信" in response.context["form"].errors["advisor"][0]
    response = client.post(NEW, _form(wecom_advisor, welcome_message="欢" * 1001))
    assert list(response.context["form"].errors) == ["welcome_message"]
    assert not ContactWay.objects.exists() and wecom_sandbox.state()["contact_ways"] == []


@pytest.mark.django_db
def test_when_wecom_refuses_nothing_is_left_half_made(client, operator, wecom_sandbox, wecom_advisor):
    client.force_login(operator)
    wecom_sandbox.fail(path="externalcontact/add_contact_way", errcode=60011)
    response = client.post(NEW, _form(wecom_advisor))
    assert response.status_code == 400
    assert "60011" in response.content.decode()
    assert not ContactWay.objects.exists()
    assert not AuditLog.objects.filter(action="wecom.contact_way_create").exists()
    # an error about the advisor is shown on the advisor field
    wecom_sandbox.fail(path="externalcontact/add_contact_way", errcode=60111)
    response = client.post(NEW, _form(wecom_advisor))
    assert "60111" in response.context["form"].errors["advisor"][0]
    assert not ContactWay.objects.exists()


@pytest.mark.django_db
def test_deactivating_deletes_the_qr_in_wecom(client, operator, wecom_sandbox, wecom_advisor):
    client.force_login(operator)
    client.post(NEW, _form(wecom_advisor))
    way = ContactWay.objects.get()
    response = client.post(f"/integrations/wecom/contact-ways/{way.pk}/deactivate/")
    assert response.status_code == 302
    way.refresh_from_db()
    assert not way.active and wecom_sandbox.state()["contact_ways"] == []
    assert AuditLog.objects.filter(action="wecom.contact_way_deactivate").count() == 1
    assert client.post(f"/integrations/wecom/contact-ways/{way.pk}/deactivate/").status_code == 302  # idempotent


@pytest.mark.django_db
def test_only_operators_and_admins_manage_contact_ways(client, advisor, branch_manager, hq_manager, admin_user,
                                                       wecom_sandbox, wecom_advisor):
    way = ContactWay.objects.create(name="x", channel="c", advisor=wecom_advisor, state="cwtest")
    for user in (advisor, branch_manager, hq_manager):
        client.force_login(user)
        assert client.get("/integrations/wecom/contact-ways/").status_code == 404
        assert client.get(NEW).status_code == 404
        assert client.get(f"/integrations/wecom/contact-ways/{way.pk}/").status_code == 404
        assert client.post(f"/integrations/wecom/contact-ways/{way.pk}/deactivate/").status_code == 404
    client.force_login(admin_user)
    assert client.get("/integrations/wecom/contact-ways/").status_code == 200
    assert client.get(NEW).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_client_who_adds_through_the_qr_is_attributed_tagged_welcomed_and_announced(
        client, operator, wecom_sandbox_callbacks, wecom_advisor):
    sb = wecom_sandbox_callbacks
    client.force_login(operator)
    client.post(NEW, _form(wecom_advisor))
    way = ContactWay.objects.get()
    from core.events import WecomContactAdded, listening

    with listening(WecomContactAdded) as heard:
        added = sb.admin("contacts", {"userid": "wx_advisor_bj", "state": way.state, "name": "扫码新客"})
        assert added["callback"]["status"] == 200 and added["callback"]["response"] == "success"
        event = process_now(CallbackEvent.objects.get(change_type="add_external_contact"))
    calls = [(e.customer_id, ExternalContact.objects.get(pk=e.contact_id).external_userid, e.contact_way_id)
             for e in heard]
    assert event.status == "done", event.error
    assert event.payload["State"] == way.state

    contact = ExternalContact.objects.get(external_userid=added["external_userid"])
    customer = contact.customer
    assert contact.match_status == "created" and customer.advisor == wecom_advisor
    assert (customer.channel, customer.utm_campaign) == ("douyin", "两融直播")
    assert CustomerTag.objects.filter(customer=customer, tag__code="margin_intent", source="wecom").exists()
    welcome = sb.state()["welcome_messages"]
    assert [(w["external_userid"], w["text"]["content"]) for w in welcome] == [
        (added["external_userid"], "您好，我是您的投顾王磊。")]
    touch = Touch.objects.get(customer=customer, source="wecom_add")
    assert (touch.channel, touch.direction, touch.staff) == ("wecom", "in", wecom_advisor)
    assert "抖音直播间 3 月" in touch.content
    assert Touch.objects.filter(customer=customer, source="wecom_welcome").count() == 1
    assert calls == [(customer.pk, added["external_userid"], way.pk)]
    way.refresh_from_db()
    assert way.added_count == 1
    assert "扫码新客" in client.get(f"/integrations/wecom/contact-ways/{way.pk}/").content.decode()


@pytest.mark.django_db
def test_an_existing_client_keeps_their_channel_and_an_add_without_a_contact_way_only_records_the_touch(
        client, wecom_sandbox, wecom_advisor):
    from integrations.wecom.tests.test_callback import post_event

    sb = wecom_sandbox
    way = ContactWay.objects.create(name="线下讲座", channel="seminar", advisor=wecom_advisor, state="cwseminar",
                                    welcome_message="欢迎")
    known = CustomerFactory(advisor=wecom_advisor, channel="app", mobile="13800001111")
    added = sb.admin("contacts", {"userid": "wx_advisor_bj", "state": way.state, "remark_mobiles": ["13800001111"],
                                  "push": False})
    post_event(client, sb, {"Event": "change_external_contact", "ChangeType": "add_external_contact",
                            "UserID": "wx_advisor_bj", "ExternalUserID": added["external_userid"],
                            "State": way.state, "WelcomeCode": added["welcome_code"]})
    event = process_now(CallbackEvent.objects.get())
    assert event.status == "done", event.error
    known.refresh_from_db()
    assert known.channel == "app" and known.utm_source == "seminar"  # only empty fields are filled
    assert ExternalContact.objects.get().customer == known

    stranger = sb.admin("contacts", {"userid": "wx_advisor_bj", "push": False})
    post_event(client, sb, {"Event": "change_external_contact", "ChangeType": "add_external_contact",
                            "UserID": "wx_advisor_bj", "ExternalUserID": stranger["external_userid"]})
    event = process_now(CallbackEvent.objects.order_by("-pk").first())
    assert event.status == "done" and "待人工关联" in event.error
    contact = ExternalContact.objects.get(external_userid=stranger["external_userid"])
    assert contact.customer is None and contact.match_status == "unmatched"
    assert Customer.objects.count() == 1
    way.refresh_from_db()
    assert way.added_count == 1
