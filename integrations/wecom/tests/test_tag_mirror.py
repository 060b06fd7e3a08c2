"""Tag removals travel both ways: a synced tag taken off a customer here is taken off in WeCom (mark_tag
remove_tag); a corp tag taken off a contact in WeCom (seen by the sync or an edit_external_contact callback) or
deleted in WeCom is taken off the customer here, with history; a synced tag retired here is deleted in WeCom."""

import pytest

from customers.models import Customer
from integrations.wecom import sync
from integrations.wecom.client import wecom_client
from integrations.wecom.models import CallbackEvent, CorpTag, ExternalContact, SyncRun
from integrations.wecom.tests.test_callback import post_event, process_now
from integrations.wecom.tests.test_sync import corp  # noqa: F401 - the fixture
from tagging.models import CustomerTag, CustomerTagHistory, Tag
from tagging.services import customer_tag_add, customer_tag_remove

pytestmark = pytest.mark.django_db


def _follow(corp, eid):  # noqa: F811
    userid = next(iter(corp.follows[eid]))
    return userid, corp.follows[eid][userid]


def _wecom_id(corp, name):  # noqa: F811
    return next(t["id"] for g in corp.tag_groups.values() for t in g["tags"].values() if t["name"] == name)


def _customer_follows(corp, customer):  # noqa: F811
    return [(c.external_userid, userid) for c in ExternalContact.objects.filter(customer=customer)
            for userid in corp.follows[c.external_userid]]


def _has(customer, code):
    return CustomerTag.objects.filter(customer=customer, tag__code=code).exists()


def _sync(kind=SyncRun.Kind.ALL):
    run = sync.wecom_sync_run(kind=kind, requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    return run


@pytest.fixture
def synced(corp):  # noqa: F811
    """基金意向 marked for sync (in WeCom already); customer A has it here, customer B has 高净值 in WeCom."""
    fund = Tag.objects.get(code="fund_interest")
    fund.sync_to_wecom = True
    fund.save()
    a = Customer.objects.get(wecom_external_userid="wmCUST001")
    b = Customer.objects.get(wecom_external_userid="wmCUST002")
    customer_tag_add(customer=a, tag=fund, source="manual", actor="test")
    _follow(corp, "wmCUST002")[1]["tag_id"] = [_wecom_id(corp, "高净值")]
    run = _sync()
    fund.refresh_from_db()
    a_follows = _customer_follows(corp, a)  # wmCUST001 and the same person under a new id (unionid)
    assert run.counts["contact_tags"]["marked"] == len(a_follows) >= 1
    assert all(fund.wecom_tag_id in corp.follows[eid][userid]["tag_id"] for eid, userid in a_follows)
    assert _has(b, "high_net_worth")
    return {"fund": fund, "a": a, "b": b}


def test_removals_travel_both_ways_through_the_sync(corp, synced):  # noqa: F811
    fund, a, b = synced["fund"], synced["a"], synced["b"]
    # here: the advisor takes 基金意向 off A
    customer_tag_remove(customer=a, tag=fund, source="manual", actor="test", reason="客户说不需要")
    # in WeCom: B's advisor takes 高净值 off B
    userid, _ = _follow(corp, "wmCUST002")
    wecom_client().external_contact.mark_tag(userid, "wmCUST002", remove_tag=[_wecom_id(corp, "高净值")])

    run = _sync()
    a_follows = _customer_follows(corp, a)
    assert run.counts["contact_tags"] == {"pulled": 0, "removed_here": 1, "marked": 0, "unmarked": len(a_follows),
                                          "mark_calls": len(a_follows)}
    marks = corp.state()["tag_marks"]
    for eid, userid in a_follows:
        assert fund.wecom_tag_id not in corp.follows[eid][userid]["tag_id"]
        assert {"userid": userid, "external_userid": eid, "add_tag": [], "remove_tag": [fund.wecom_tag_id]} in marks
    assert not _has(b, "high_net_worth")
    history = CustomerTagHistory.objects.filter(customer=b, tag__code="high_net_worth").order_by("-at", "-pk").first()
    assert (history.action, history.source, history.actor_label) == ("removed", "wecom", "wecom-sync")
    assert history.evidence.startswith("企业微信中已移除该标签")

    # nothing comes back, nothing is sent again
    again = _sync()
    assert again.counts["contact_tags"] == {"pulled": 0, "removed_here": 0, "marked": 0, "unmarked": 0, "mark_calls": 0}
    assert not _has(a, "fund_interest") and not _has(b, "high_net_worth")


def test_a_tag_removed_here_that_is_not_synced_to_wecom_stays_removed_and_wecom_is_left_alone(corp, synced):  # noqa: F811
    b = synced["b"]
    customer_tag_remove(customer=b, tag=Tag.objects.get(code="high_net_worth"), source="manual", actor="test")
    run = _sync()  # before: the next sync put the WeCom tag back on the customer
    assert not _has(b, "high_net_worth")
    assert run.counts["contact_tags"]["mark_calls"] == 0 and _follow(corp, "wmCUST002")[1]["tag_id"]


def test_an_edit_callback_mirrors_a_removal_and_an_addition_at_once(client, corp, synced):  # noqa: F811
    b = synced["b"]
    userid, follow = _follow(corp, "wmCUST002")
    follow["tag_id"] = [_wecom_id(corp, "基金意向")]  # the advisor swapped 高净值 for 基金意向 in WeCom
    post_event(client, corp, {"Event": "change_external_contact", "ChangeType": "edit_external_contact",
                              "UserID": userid, "ExternalUserID": "wmCUST002"})
    event = process_now(CallbackEvent.objects.get())
    assert event.status == "done", event.error
    assert not _has(b, "high_net_worth")
    assert CustomerTag.objects.get(customer=b, tag__code="fund_interest").source == "wecom"


def test_a_corp_tag_deleted_in_wecom_leaves_the_customers_who_carried_it(client, corp, synced):  # noqa: F811
    a, b = synced["a"], synced["b"]
    customer_tag_add(customer=a, tag=Tag.objects.get(code="high_net_worth"), source="manual", actor="test")
    high = _wecom_id(corp, "高净值")
    wecom_client().post("externalcontact/del_corp_tag", data={"tag_id": [high]})
    post_event(client, corp, {"Event": "change_external_tag", "ChangeType": "delete", "Id": high, "TagType": "tag"})
    assert process_now(CallbackEvent.objects.get()).status == "done"
    assert not _has(b, "high_net_worth")  # carried it in WeCom
    assert _has(a, "high_net_worth")  # had it only here
    history = CustomerTagHistory.objects.filter(customer=b, tag__code="high_net_worth", action="removed").get()
    assert "企业微信中已删除标签" in history.evidence
    assert CorpTag.objects.get(wecom_tag_id=high).deleted_at is not None


def test_a_synced_tag_deactivated_here_is_deleted_in_wecom(corp, synced):  # noqa: F811
    fund = synced["fund"]
    wecom_id = fund.wecom_tag_id
    fund.active = False
    fund.save()
    run = _sync(SyncRun.Kind.TAGS)
    assert run.counts["corp_tags"]["deleted_in_wecom"] == 1
    assert all(t["id"] != wecom_id for g in corp.tag_groups.values() for t in g["tags"].values() if not t.get("deleted"))
    fund.refresh_from_db()
    assert fund.wecom_tag_id == "" and CorpTag.objects.get(wecom_tag_id=wecom_id).deleted_at is not None
    assert _has(synced["a"], "fund_interest")  # customers keep their rows of the retired tag
    assert _sync(SyncRun.Kind.TAGS).counts["corp_tags"]["deleted_in_wecom"] == 0


def test_a_synced_tag_removed_by_hand_leaves_wecom_at_once(corp, synced, monkeypatch,  # noqa: F811
                                                          django_capture_on_commit_callbacks):
    from integrations.wecom import tags_sync
    from integrations.wecom.tasks_sync import contact_tags_push

    fund, a = synced["fund"], synced["a"]
    fund.refresh_from_db()
    tags_sync.synced_tag_codes_forget()
    queued = []
    # the session's Celery worker does not see this test's sandbox settings: run the queued task here
    monkeypatch.setattr(contact_tags_push, "delay", lambda customer_id: queued.append(
        contact_tags_push.apply(args=[customer_id]).get()))
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_remove(customer=a, tag=fund, source="rule", actor="rule-run")  # rule runs: left to the sync
    assert queued == []
    customer_tag_add(customer=a, tag=fund, source="manual", actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        customer_tag_remove(customer=a, tag=fund, source="manual", actor="advisor_sh", reason="客户说不需要")
    assert len(queued) == 1 and queued[0]["unmarked"] == len(_customer_follows(corp, a))
    assert all(fund.wecom_tag_id not in corp.follows[eid][userid]["tag_id"] for eid, userid in _customer_follows(corp, a))
    assert _sync().counts["contact_tags"]["mark_calls"] == 0  # nothing left for the sync
