"""Groups against the local WeCom sandbox over real HTTP: sync from groupchat/get, member changes,
dismissal, and the 入群二维码 (add_join_way / get_join_way)."""

import pytest
from django.urls import reverse

from core.errors import ApplicationError
from customers.tests.factories import CustomerFactory
from groups.models import GroupChat, GroupMember
from groups.services import group_dismissed, group_join_way_create, group_sync_from_wecom
from integrations.wecom.client import wecom_client

pytestmark = pytest.mark.django_db


def fetch(chat_id: str) -> dict:
    return wecom_client().post("externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1})["group_chat"]


@pytest.fixture
def bj_chat(wecom_sandbox, advisor):
    advisor.wecom_userid = "wx_advisor_bj"
    advisor.save(update_fields=["wecom_userid"])
    externals = [eid for eid in list(wecom_sandbox.contacts)[:3]]
    created = wecom_sandbox.admin("groupchat", {"owner": "wx_advisor_bj", "name": "北京股友交流群",
                                                "members": externals, "push": False})
    return {"chat_id": created["chat_id"], "externals": externals}


def test_sync_from_the_sandbox_and_follow_member_changes(wecom_sandbox, bj_chat, advisor):
    linked = CustomerFactory(advisor=advisor, wecom_external_userid=bj_chat["externals"][0], name="已关联客户")
    group = group_sync_from_wecom(fetch(bj_chat["chat_id"]))
    assert group.advisor == advisor and group.name == "北京股友交流群" and group.member_count == 4
    assert group.members.get(userid=bj_chat["externals"][0]).customer == linked
    assert group.members.get(userid="wx_advisor_bj").type == GroupMember.Type.STAFF

    wecom_sandbox.admin("groupchat/members", {"chat_id": bj_chat["chat_id"], "remove": [bj_chat["externals"][1]],
                                              "push": False})
    group = group_sync_from_wecom(fetch(bj_chat["chat_id"]))
    assert group.member_count == 3
    assert list(group.member_events.filter(kind="leave").values_list("userid", flat=True)) == [bj_chat["externals"][1]]

    wecom_sandbox.admin("groupchat/dismiss", {"chat_id": bj_chat["chat_id"], "push": False})
    group_dismissed(bj_chat["chat_id"])
    group.refresh_from_db()
    assert group.status == GroupChat.Status.DISMISSED and not group.members.filter(left_at__isnull=True).exists()


def test_join_way_qr_through_wecom(wecom_sandbox, bj_chat, advisor, client):
    group = group_sync_from_wecom(fetch(bj_chat["chat_id"]))
    group = group_join_way_create(actor=advisor, group=group)
    # the sandbox serves the QR image itself (WeCom's CDN is out of reach on premises)
    assert group.join_qr_code.startswith(f"{wecom_sandbox.url}/sandbox/qr/join-") and group.join_config_id
    way = next(w for w in wecom_sandbox.state()["join_ways"] if w["config_id"] == group.join_config_id)
    assert way["scene"] == 2 and way["chat_id_list"] == [bj_chat["chat_id"]] and way["state"] == f"grp{group.pk}"

    # from the page: the button answers the QR card
    client.force_login(advisor)
    response = client.post(reverse("groups:join_way", args=[group.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "/sandbox/qr/join-" in response.content.decode()
    group.refresh_from_db()
    assert group.join_config_id != way["config_id"]


def test_join_way_error_is_shown_and_nothing_stored(wecom_sandbox, bj_chat, advisor, client):
    group = group_sync_from_wecom(fetch(bj_chat["chat_id"]))
    wecom_sandbox.admin("fail", {"path": "externalcontact/groupchat/add_join_way", "errcode": 90500})
    with pytest.raises(ApplicationError) as exc:
        group_join_way_create(actor=advisor, group=group)
    assert "90500" in exc.value.message
    group.refresh_from_db()
    assert group.join_qr_code == "" and group.join_config_id == ""
    wecom_sandbox.admin("fail", {"path": "externalcontact/groupchat/add_join_way", "errcode": 90500})
    client.force_login(advisor)
    response = client.post(reverse("groups:join_way", args=[group.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "客户群不存在" in response.content.decode()
