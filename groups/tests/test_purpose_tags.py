"""入群自动标签: joining a group of a purpose adds that purpose's tags (source 入群规则, with history) through the
real WeCom paths (callback, group sync); leaving takes them off only when the rule says so and the client is in
no other group of that purpose; tags set another way are left alone. Operators edit the rules, audited."""

import pytest
from django.urls import reverse

from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from groups.models import GroupChat, PurposeTagRule
from groups.services import group_sync_from_wecom, purpose_tag_rule_add
from integrations.wecom.client import wecom_client
from integrations.wecom.models import CallbackEvent, SyncRun
from integrations.wecom.sync import wecom_sync_run
from integrations.wecom.tests.test_callback import post_event, process_now
from tagging.models import CustomerTag, CustomerTagHistory, Tag
from tagging.services import customer_tag_add

pytestmark = pytest.mark.django_db


def fetch(chat_id: str) -> dict:
    return wecom_client().post("externalcontact/groupchat/get", data={"chat_id": chat_id, "need_name": 1})["group_chat"]


def held(customer) -> dict[str, str]:
    return dict(CustomerTag.objects.filter(customer=customer).values_list("tag__code", "source"))


@pytest.fixture
def corp(wecom_sandbox, advisor, operator):
    sb = wecom_sandbox
    advisor.wecom_userid = "wx_advisor_bj"
    advisor.save(update_fields=["wecom_userid"])
    eids = list(sb.contacts)[:4]
    clients = [CustomerFactory(advisor=advisor, wecom_external_userid=eid) for eid in eids]
    chats = {}
    for key, purpose, members in (("fund_a", "fund", [eids[3]]), ("fund_b", "fund", [eids[3]]), ("vip", "vip", [])):
        chat_id = sb.admin("groupchat", {"owner": "wx_advisor_bj", "name": f"群{key}", "members": members,
                                         "push": False})["chat_id"]
        group = group_sync_from_wecom(fetch(chat_id))
        GroupChat.objects.filter(pk=group.pk).update(purpose=purpose)
        chats[key] = chat_id
    tags = {code: Tag.objects.get(code=code) for code in ("fund_interest", "news_reader", "high_net_worth")}
    purpose_tag_rule_add(actor=operator, purpose="fund", tag=tags["fund_interest"], remove_on_leave=True)
    purpose_tag_rule_add(actor=operator, purpose="fund", tag=tags["news_reader"], remove_on_leave=False)
    purpose_tag_rule_add(actor=operator, purpose="vip", tag=tags["high_net_worth"], remove_on_leave=True)
    return {"sb": sb, "clients": clients, "chats": chats, "tags": tags}


def _member_change(client, sb, chat_id, *, add=(), remove=(), capture):
    """The member change in WeCom, announced by its callback and processed as in production."""
    detail = "add_member" if add else "del_member"
    sb.admin("groupchat/members", {"chat_id": chat_id, "add": list(add), "remove": list(remove), "push": False})
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "update", "ChatId": chat_id,
                            "UpdateDetail": detail, "MemChangeCnt": len(add) + len(remove),
                            "MemChangeList": list(add) + list(remove)})
    with capture(execute=True):
        event = process_now(CallbackEvent.objects.order_by("-pk").first())
    assert event.status == "done"


def test_joining_adds_the_purpose_tags_and_leaving_removes_only_what_is_configured(
        client, corp, django_capture_on_commit_callbacks):
    sb, chats = corp["sb"], corp["chats"]
    joiner, manual, other, regular = corp["clients"]
    capture = django_capture_on_commit_callbacks
    customer_tag_add(customer=manual, tag=corp["tags"]["fund_interest"], source="manual", actor="advisor")

    # joins a fund group (callback): both fund tags, from the rule, with history naming the group
    _member_change(client, sb, chats["fund_a"], add=[joiner.wecom_external_userid, manual.wecom_external_userid],
                   capture=capture)
    assert held(joiner) == {"fund_interest": "group", "news_reader": "group"}
    history = CustomerTagHistory.objects.get(customer=joiner, tag__code="fund_interest")
    assert history.action == "added" and history.source == "group" and history.evidence == "加入基金群「群fund_a」"
    assert held(manual) == {"fund_interest": "manual", "news_reader": "group"}  # set by hand: not taken over

    # also in the second fund group (picked up by the groups sync): the tags stay, their evidence is the newer join
    sb.admin("groupchat/members", {"chat_id": chats["fund_b"], "add": [joiner.wecom_external_userid], "push": False})
    with capture(execute=True):
        assert wecom_sync_run(kind=SyncRun.Kind.GROUPS).status == "done"
    assert sorted(CustomerTagHistory.objects.filter(customer=joiner).values_list("action", flat=True)) == [
        "added", "added", "updated", "updated"]
    assert CustomerTag.objects.get(customer=joiner, tag__code="fund_interest").evidence == "加入基金群「群fund_b」"

    # leaves the first fund group but is still in the second: keeps everything
    _member_change(client, sb, chats["fund_a"], remove=[joiner.wecom_external_userid, manual.wecom_external_userid],
                   capture=capture)
    assert held(joiner) == {"fund_interest": "group", "news_reader": "group"}
    # manual left its only fund group: the rule's tag that removes on leave goes, the hand-set one stays
    assert held(manual) == {"fund_interest": "manual", "news_reader": "group"}

    # leaves the last fund group (seen by the sync): the tag configured to go goes, with a reason; the other stays
    sb.admin("groupchat/members", {"chat_id": chats["fund_b"], "remove": [joiner.wecom_external_userid],
                                   "push": False})
    with capture(execute=True):
        wecom_sync_run(kind=SyncRun.Kind.GROUPS)
    assert held(joiner) == {"news_reader": "group"}
    removed = CustomerTagHistory.objects.get(customer=joiner, tag__code="fund_interest", action="removed")
    assert removed.source == "group" and removed.evidence == "退出基金群「群fund_b」，已不在任何基金群中"

    # the regular member was synced before any rule existed: never tagged retroactively
    assert held(regular) == {}

    # a VIP joins, then the VIP group is dismissed (callback): dismissal is leaving, the tag goes
    _member_change(client, sb, chats["vip"], add=[other.wecom_external_userid], capture=capture)
    assert held(other) == {"high_net_worth": "group"}
    sb.admin("groupchat/dismiss", {"chat_id": chats["vip"], "push": False})
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "dismiss", "ChatId": chats["vip"]})
    with capture(execute=True):
        assert process_now(CallbackEvent.objects.order_by("-pk").first()).status == "done"
    assert held(other) == {}


def test_operators_edit_the_rules_on_the_purposes_page(client, corp, operator, advisor):
    url = reverse("groups:purposes")
    client.force_login(advisor)
    page = client.get(url).content.decode()
    assert "基金意向" in page and "退群时移除" in page and 'data-testid="purpose-rule-form"' not in page
    assert client.post(url, {"purpose": "vip", "tag": corp["tags"]["news_reader"].pk}).status_code == 404

    client.force_login(operator)
    assert client.get(reverse("groups:list")).content.decode().count('data-testid="group-purposes-link"') == 1
    response = client.post(url, {"purpose": "vip", "tag": corp["tags"]["news_reader"].pk, "remove_on_leave": "on"})
    assert response.status_code == 302
    rule = PurposeTagRule.objects.get(purpose="vip", tag=corp["tags"]["news_reader"])
    assert rule.remove_on_leave and rule.created_by == operator
    audit = AuditLog.objects.filter(action="group.purpose_tag_rule_add").latest("pk")
    assert audit.actor == operator and audit.details == {"purpose": "vip", "tag": "news_reader", "remove_on_leave": True}

    assert client.post(url, {"purpose": "vip", "tag": ""}).status_code == 400
    response = client.post(url, {"delete": str(rule.pk)})
    assert response.status_code == 302 and not PurposeTagRule.objects.filter(pk=rule.pk).exists()
    assert AuditLog.objects.filter(action="group.purpose_tag_rule_delete", actor=operator).exists()
