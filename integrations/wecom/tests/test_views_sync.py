"""The 企业微信同步 page and the review queue, as admins, operators and everyone else see them."""

import pytest
from django.urls import reverse

from core.models import AuditLog
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from integrations.wecom import sync
from integrations.wecom.contacts import contact_upsert_from_wecom
from integrations.wecom.models import ExternalContact, SyncRun

pytestmark = pytest.mark.django_db


def unmatched(eid="wmREVIEW1", *, userid="wx_advisor_a", remark="王先生", mobiles=("13912345678",)):
    return contact_upsert_from_wecom({"external_userid": eid, "name": "微信昵称", "type": 1},
                                     [{"userid": userid, "remark": remark, "remark_mobiles": list(mobiles)}])


def test_sync_page_is_for_admins_and_operators_only(client, admin_user, operator, advisor, branch_manager,
                                                    hq_manager, compliance, wecom_sandbox):
    url = reverse("wecom:sync_runs")
    for user in (advisor, branch_manager, hq_manager, compliance):
        client.force_login(user)
        assert client.get(url).status_code == 404
        assert client.get(reverse("wecom:review")).status_code == 404
    client.force_login(operator)
    assert client.get(url).status_code == 200
    client.force_login(admin_user)
    index = client.get(reverse("integrations:index")).content.decode()
    assert url in index and "企业微信" in index


def test_sync_page_shows_the_connection_and_the_runs_and_queues_a_run(client, admin_user, wecom_sandbox):
    client.force_login(admin_user)
    page = client.get(reverse("wecom:sync_runs")).content.decode()
    assert wecom_sandbox.url in page and wecom_sandbox.corp_id in page and "未缓存" in page
    wecom_sandbox.admin("fail", {"path": "externalcontact/get_follow_user_list", "errcode": 48002})
    failed = sync.wecom_sync_run(kind="contacts", requested_by="test")
    done = sync.wecom_sync_run(kind="groups", requested_by="test")
    page = client.get(reverse("wecom:sync_runs")).content.decode()
    assert "已缓存" in page
    assert "48002" in page and "客户联系权限" in page
    assert f'data-run="{failed.pk}"' in page and f'data-run="{done.pk}"' in page
    response = client.post(reverse("wecom:sync_runs"), {"kind": "contacts"}, follow=True)
    assert "已开始同步（客户联系）" in response.content.decode()
    response = client.post(reverse("wecom:sync_runs"), {"kind": "everything"}, follow=True)
    assert "未知的同步范围" in response.content.decode()
    assert SyncRun.objects.count() == 2  # queued runs are created by the worker, not the page


def test_sync_page_says_when_wecom_is_not_configured(client, admin_user, settings):
    settings.WECOM_CORP_ID = ""
    client.force_login(admin_user)
    page = client.get(reverse("wecom:sync_runs")).content.decode()
    assert "未配置企业微信" in page
    response = client.post(reverse("wecom:sync_runs"), {"kind": "all"}, follow=True)
    assert "无法同步" in response.content.decode()


def test_review_queue_shows_masked_mobiles_and_links_by_customer_number_or_mobile(client, operator, advisor):
    first, second = unmatched("wmR1"), unmatched("wmR2", mobiles=())
    customer = CustomerFactory(advisor=advisor, external_id="C-LINK-1")
    by_mobile = CustomerFactory(advisor=advisor, mobile="13800001234")
    client.force_login(operator)
    page = client.get(reverse("wecom:review")).content.decode()
    assert "139****5678" in page and "13912345678" not in page and "王先生" in page

    response = client.post(reverse("wecom:review"), {"action": "link", "contact": first.pk, "customer": "C-LINK-1"})
    assert response.status_code == 302
    first.refresh_from_db()
    customer.refresh_from_db()
    assert (first.customer, first.match_status, first.match_method) == (customer, "matched", "manual")
    assert customer.wecom_external_userid == "wmR1"
    client.post(reverse("wecom:review"), {"action": "link", "contact": second.pk, "customer": "138 0000 1234"})
    second.refresh_from_db()
    assert second.customer == by_mobile
    assert set(AuditLog.objects.filter(action="wecom.contact_link").values_list("target_id", flat=True)) == {"wmR1", "wmR2"}
    assert "没有待人工关联" in client.get(reverse("wecom:review")).content.decode()


def test_review_queue_explains_an_unknown_customer_and_changes_nothing(client, admin_user):
    contact = unmatched()
    client.force_login(admin_user)
    response = client.post(reverse("wecom:review"), {"action": "link", "contact": contact.pk, "customer": "NOPE"})
    assert response.status_code == 400
    assert "没有找到唯一的客户" in response.content.decode()
    contact.refresh_from_db()
    assert contact.match_status == "unmatched" and not AuditLog.objects.filter(action__startswith="wecom.").exists()


def test_review_queue_creates_a_customer_or_ignores(client, admin_user, advisor):
    advisor.wecom_userid = "wx_advisor_a"
    advisor.save()
    creating, ignoring = unmatched("wmC1"), unmatched("wmC2")
    client.force_login(admin_user)
    client.post(reverse("wecom:review"), {"action": "create", "contact": creating.pk})
    creating.refresh_from_db()
    assert creating.match_status == "created"
    created = Customer.objects.get(external_id="wx:wmC1")
    assert created.advisor == advisor and created.name == "王先生" and created.mobile_masked == "139****5678"
    client.post(reverse("wecom:review"), {"action": "ignore", "contact": ignoring.pk})
    ignoring.refresh_from_db()
    assert ignoring.match_status == "ignored" and ignoring.customer is None
    assert AuditLog.objects.filter(action="wecom.contact_ignore", target_id="wmC2").exists()
    # already resolved: a second click explains instead of changing anything
    response = client.post(reverse("wecom:review"), {"action": "create", "contact": ignoring.pk})
    assert response.status_code == 400 and "已处理" in response.content.decode()
    assert ExternalContact.objects.get(pk=ignoring.pk).match_status == "ignored"
