"""WeCom sync against the sandbox over real HTTP: contacts and matching, token expiry mid-sync, frequency
limits, persistent errors, idempotency, corp tags both ways, group chats, and the task."""

import pytest

from core.demo import demo_staff_load
from core.models import User
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from groups.models import GroupChat
from integrations.wecom import sync
from integrations.wecom.contacts import contact_upsert_from_wecom
from integrations.wecom.models import ContactFollow, CorpTag, ExternalContact, SyncRun
from integrations.wecom.tasks_sync import wecom_sync
from tagging.models import CustomerTag, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def corp(wecom_sandbox, monkeypatch):
    """Demo staff, 40 customers with a WeCom id and 20 with only a mobile, and the sandbox seeded from them;
    pages of 10 contacts so a sync takes several pages."""
    demo_staff_load()
    advisors = list(User.objects.filter(username__in=["advisor_bj", "advisor_sh"]).order_by("username"))
    for n in range(40):
        CustomerFactory(advisor=advisors[n % 2], wecom_external_userid=f"wmCUST{n:03d}", mobile=f"1380000{n:04d}")
    for n in range(20):
        CustomerFactory(advisor=advisors[n % 2], mobile=f"1390000{n:04d}")
    wecom_sandbox.reseed_from_db()
    monkeypatch.setattr(sync, "CONTACTS_PER_PAGE", 10)
    return wecom_sandbox


def snapshot():
    return {
        "contacts": sorted(ExternalContact.objects.values_list("external_userid", "name", "customer_id", "match_status",
                                                               "match_method", "deleted_at", "updated_at")),
        "follows": sorted(ContactFollow.objects.values_list("contact__external_userid", "userid", "staff_id", "remark",
                                                            "remark_mobiles", "wecom_tag_ids", "deleted_at")),
        "customers": sorted(Customer.objects.values_list("external_id", "wecom_external_userid")),
        "tags": sorted(CustomerTag.objects.values_list("customer_id", "tag_id", "source")),
        "corp_tags": sorted(CorpTag.objects.values_list("wecom_tag_id", "name", "tag_id", "deleted_at")),
        "groups": GroupChat.objects.count(),
    }


def test_full_sync_links_contacts_by_each_method_and_a_second_run_changes_nothing(corp):
    run = sync.wecom_sync_run(requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    assert run.finished_at and run.counts["duration_ms"] >= 0
    assert run.counts["follow_users"]["unknown"] == 0 and run.counts["follow_users"]["known"] == 6
    total_follows = sum(len(f) for f in corp.follows.values())
    assert run.counts["contacts"]["seen"] == total_follows and run.counts["contacts"]["pages"] > 3

    by_id = {c.external_userid: c for c in ExternalContact.objects.select_related("customer")}
    assert set(by_id) == set(corp.contacts)
    # (1) by Customer.wecom_external_userid
    direct = by_id["wmCUST007"]
    assert direct.match_status == "matched" and direct.match_method == "external_userid"
    assert direct.customer.wecom_external_userid == "wmCUST007"
    assert direct.follows.get().staff.username == "advisor_sh"
    # (3) by remark mobile, through the blind index; the customer gets the external_userid
    by_mobile = [c for c in by_id.values() if c.match_method == "mobile"]
    assert by_mobile
    for contact in by_mobile:
        assert contact.customer.wecom_external_userid == contact.external_userid
        assert contact.customer.mobile_masked.startswith("139")
    # (2) by a unionid already known (same person, new external_userid)
    by_unionid = [c for c in by_id.values() if c.match_method == "unionid"]
    assert by_unionid
    for contact in by_unionid:
        twin = ExternalContact.objects.exclude(pk=contact.pk).get(unionid=contact.unionid)
        assert contact.customer_id == twin.customer_id
    # nothing known → the review queue
    assert run.counts["match"]["unmatched"] == 40 == ExternalContact.objects.filter(match_status="unmatched").count()
    assert GroupChat.objects.count() == len(corp.groupchats)
    assert CorpTag.objects.get(name="高净值").tag == Tag.objects.get(code="high_net_worth")  # linked by name

    before = snapshot()
    again = sync.wecom_sync_run(requested_by="test")
    assert again.status == SyncRun.Status.DONE
    assert again.counts["contacts"]["written"] == 0 and again.counts["contacts"]["unchanged"] == total_follows
    assert again.counts["corp_tags"]["created"] == again.counts["corp_tags"]["updated"] == 0
    assert again.counts["contact_tags"] == {"pulled": 0, "removed_here": 0, "marked": 0, "unmarked": 0, "mark_calls": 0}
    assert snapshot() == before


def test_token_expiry_mid_sync_is_refreshed_and_the_sync_finishes(corp):
    # the third page of contacts finds every token expired (a real expiry), then a forged-token answer on a group
    corp.admin("fail", {"path": "externalcontact/batch/get_by_user", "after": 2, "expire_tokens": True})
    corp.admin("fail", {"path": "externalcontact/groupchat/get", "after": 3, "errcode": 40014})
    run = sync.wecom_sync_run(requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    assert run.token_refreshes == 2
    assert ExternalContact.objects.count() == len(corp.contacts)
    assert GroupChat.objects.count() == len(corp.groupchats)
    assert len(corp.tokens) == 3  # the first token, and one after each rejection


def test_frequency_limits_back_off_and_the_sync_finishes(corp):
    corp.admin("fail", {"path": "externalcontact/batch/get_by_user", "after": 1, "errcode": 45009, "count": 2})
    run = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    assert run.counts["rate_limited"] == 2 and run.token_refreshes == 0
    assert ExternalContact.objects.count() == len(corp.contacts)


def test_a_persistent_error_fails_the_run_and_keeps_what_was_written(corp):
    sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="first")
    written = snapshot()
    corp.admin("fail", {"path": "externalcontact/batch/get_by_user", "after": 2, "errcode": 60011, "count": 99})
    run = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert run.status == SyncRun.Status.FAILED
    assert "60011" in run.error and "可见范围" in run.error
    assert snapshot() == written  # no follow marked removed by the incomplete pass

    ExternalContact.objects.all().delete()
    corp.failures.clear()
    corp.admin("fail", {"path": "externalcontact/batch/get_by_user", "after": 2, "errcode": 60011, "count": 99})
    failed = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert failed.status == SyncRun.Status.FAILED
    assert ExternalContact.objects.count() == 20  # the two pages before the failure stay
    corp.failures.clear()
    assert sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test").status == SyncRun.Status.DONE
    assert ExternalContact.objects.count() == len(corp.contacts)


def test_removed_relations_are_marked_deleted(corp):
    sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    corp.admin("contacts/delete", {"userid": "wx_advisor_bj", "external_userid": "wmCUST000", "push": False})
    run = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert run.counts["contacts"]["follows_removed"] == 1 and run.counts["contacts"]["contacts_removed"] == 1
    contact = ExternalContact.objects.get(external_userid="wmCUST000")
    assert contact.deleted_at is not None and contact.follows.get().deleted_at is not None


def test_corp_tags_travel_both_ways(corp):
    fund = Tag.objects.get(code="fund_interest")  # 基金意向: in WeCom already, linked by name
    margin = Tag.objects.get(code="margin_intent")
    margin.name = "两融意向（系统）"  # not in WeCom by that name: created there
    margin.sync_to_wecom = True
    margin.save()
    fund.sync_to_wecom = True
    fund.save()
    customer = Customer.objects.get(wecom_external_userid="wmCUST001")
    from tagging.services import customer_tag_add

    customer_tag_add(customer=customer, tag=margin, source="manual", actor="test")
    # in WeCom the same client carries 高净值 (a linked tag): it becomes our tag
    high = next(t for g in corp.tag_groups.values() for t in g["tags"].values() if t["name"] == "高净值")
    corp.follows["wmCUST001"]["wx_advisor_sh"]["tag_id"] = [high["id"]]

    run = sync.wecom_sync_run(requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    margin.refresh_from_db()
    assert margin.wecom_tag_id and run.counts["corp_tags"]["created_in_wecom"] == 1
    group = next(g for g in corp.tag_groups.values() if margin.wecom_tag_id in g["tags"])
    assert group["group_name"] == margin.category.name
    assert {"userid": "wx_advisor_sh", "external_userid": "wmCUST001", "add_tag": [margin.wecom_tag_id],
            "remove_tag": []} in corp.state()["tag_marks"]
    assert CustomerTag.objects.get(customer=customer, tag__code="high_net_worth").source == "wecom"
    assert sync.wecom_sync_run(requested_by="test").counts["contact_tags"]["mark_calls"] == 0


def test_contact_upsert_creates_a_prospect_when_asked(wecom_sandbox):
    demo_staff_load()
    advisor = User.objects.get(username="advisor_sz")
    contact = contact_upsert_from_wecom(
        {"external_userid": "wmNEW1", "name": "新朋友", "type": 1, "gender": 2, "unionid": "oNEW1"},
        [{"userid": "wx_advisor_sz", "remark": "孙小姐", "remark_mobiles": ["13700001111"], "state": "cw_1",
          "createtime": 1767225600, "tags": []}],
        create_if_unmatched=True, advisor=advisor)
    assert contact.match_status == "created" and contact.match_method == "created"
    customer = contact.customer
    assert customer.external_id == "wx:wmNEW1" and customer.name == "孙小姐"
    assert customer.advisor == advisor and customer.branch == advisor.branch
    assert customer.funnel_stage == "id_uploaded" and customer.wecom_external_userid == "wmNEW1"
    assert customer.mobile_masked == "137****1111"
    assert contact.follows.get().state == "cw_1"
    again = contact_upsert_from_wecom({"external_userid": "wmNEW1", "name": "新朋友", "type": 1, "gender": 2,
                                       "unionid": "oNEW1"}, [], create_if_unmatched=True, advisor=advisor)
    assert again.customer_id == customer.pk and Customer.objects.filter(external_id__startswith="wx:").count() == 1


def test_the_task_runs_a_sync_and_does_nothing_unconfigured(corp, settings):
    run_id = wecom_sync("groups", "test")
    run = SyncRun.objects.get(pk=run_id)
    assert run.kind == "groups" and run.status == "done" and run.counts["groups"]["seen"] == len(corp.groupchats)
    settings.WECOM_CORP_ID = ""
    assert wecom_sync("all", "beat") is None


def test_contact_pages_cost_a_fixed_number_of_queries(corp, django_assert_max_num_queries):
    """Each page of contacts is read and written in bulk: the queries grow with the pages, not the contacts
    (before: about 12 per contact on the first pass, 7 on an unchanged one: 1030 and 648 queries here)."""
    total = sum(len(f) for f in corp.follows.values())
    pages = -(-total // sync.CONTACTS_PER_PAGE)
    assert total > 80 and pages < total / 8
    # + giving each of the 20 customers linked by mobile its external_userid (2 queries each)
    with django_assert_max_num_queries(20 + 10 * pages + 2 * 20):
        first = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert first.status == SyncRun.Status.DONE and first.counts["contacts"]["written"] == total
    with django_assert_max_num_queries(20 + 7 * pages):
        again = sync.wecom_sync_run(kind=SyncRun.Kind.CONTACTS, requested_by="test")
    assert again.counts["contacts"] == {**first.counts["contacts"], "written": 0, "unchanged": total,
                                        "linked_by_unionid_after_pass": 0}


def test_contact_tags_sync_reads_the_customers_tags_once(corp, django_assert_max_num_queries):
    from integrations.wecom.client import wecom_client
    from integrations.wecom.tags_sync import contact_tags_sync

    assert sync.wecom_sync_run(requested_by="test").status == SyncRun.Status.DONE
    assert ExternalContact.objects.filter(match_status="matched").count() > 40
    with django_assert_max_num_queries(8):  # before: two queries per linked contact
        assert contact_tags_sync(wecom_client()) == {"pulled": 0, "removed_here": 0, "marked": 0, "unmarked": 0, "mark_calls": 0}
