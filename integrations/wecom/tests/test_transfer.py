"""Client transfers (离职继承 / 在职转接): in the product at once, in WeCom per client (≤100 per call),
results polled and refusals reported by the transfer_fail callback; branch managers only for their branch."""

import pytest
from django.utils import timezone

from core.models import AuditLog
from customers.models import Customer, Task
from customers.tests.factories import CustomerFactory
from integrations.wecom.models import CallbackEvent, Transfer, TransferItem
from integrations.wecom.tests.test_callback import post_event, process_now
from integrations.wecom.transfers import transfers_poll

NEW = "/integrations/wecom/transfers/new/"


@pytest.fixture
def handover(make_staff):
    return make_staff("advisor_leaving", "advisor", "BJ01", employee_code="E9201", wecom_userid="wx_leaving",
                      display_name="离职投顾")


@pytest.fixture
def takeover(make_staff):
    return make_staff("advisor_taking", "advisor", "BJ01", employee_code="E9202", wecom_userid="wx_taking",
                      display_name="接替投顾")


def _clients(handover, n_wecom: int, n_local: int = 0, prefix: str = "wmT"):
    wecom = [CustomerFactory(advisor=handover, wecom_external_userid=f"{prefix}{i:04d}") for i in range(n_wecom)]
    local = [CustomerFactory(advisor=handover) for _ in range(n_local)]
    return wecom, local


def _data(kind, handover, takeover):
    return {"kind": kind, "from_advisor": handover.pk, "to_advisor": takeover.pk}


@pytest.mark.django_db
def test_on_job_transfer_with_a_refusal_a_failure_and_a_local_client(client, branch_manager, handover, takeover,
                                                                      wecom_sandbox):
    sb = wecom_sandbox
    wecom, local = _clients(handover, 3, 1)
    sb.reseed_from_db()
    not_a_friend = CustomerFactory(advisor=handover, wecom_external_userid="wmNotFriends")  # not in WeCom's follows
    task = Task.objects.create(customer=wecom[0], assignee=handover, title="回访", due_at=timezone.now())
    done_task = Task.objects.create(customer=wecom[0], assignee=handover, title="旧", due_at=timezone.now(),
                                    status="done", outcome="reached")
    client.force_login(branch_manager)

    preview = client.get(NEW, _data("on_job", handover, takeover))
    assert preview.status_code == 200
    rows = preview.context["preview"]
    assert {r["customer"].pk for r in rows} == {c.pk for c in [*wecom, *local, not_a_friend]}
    assert preview.context["preview_wecom"] == 3  # WeCom does not list the one who is not a friend
    assert preview.context["plan"].counts["not_friend"] == 1 and preview.context["plan"].checked_live
    assert Customer.objects.filter(advisor=handover).count() == 5  # a preview moves nothing

    response = client.post(NEW, _data("on_job", handover, takeover))
    transfer = Transfer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/integrations/wecom/transfers/{transfer.pk}/"
    assert not Customer.objects.filter(advisor=handover).exists()
    task.refresh_from_db()
    done_task.refresh_from_db()
    assert task.assignee == takeover and done_task.assignee == handover
    audit = AuditLog.objects.get(action="wecom.transfer_start")
    assert audit.details["customers"] == 5 and audit.details["wecom_contacts"] == 3 and audit.actor == branch_manager

    calls = sb.state()["transfers"]
    assert len(calls) == 1 and calls[0]["kind"] == "on_job" and calls[0]["handover_userid"] == "wx_leaving"
    status = dict(TransferItem.objects.values_list("customer_id", "status"))
    assert status == {wecom[0].pk: "waiting", wecom[1].pk: "waiting", wecom[2].pk: "waiting",
                      local[0].pk: "local", not_a_friend.pk: "local"}  # not submitted: WeCom would answer 84061
    assert TransferItem.objects.get(customer=not_a_friend).errcode == 84061
    assert "wmNotFriends" not in calls[0]["external_userid"]

    # the client of wecom[1] refuses: WeCom pushes transfer_fail
    post_event(client, sb, {"Event": "change_external_contact", "ChangeType": "transfer_fail",
                            "FailReason": "customer_refused", "UserID": "wx_taking",
                            "ExternalUserID": wecom[1].wecom_external_userid})
    assert process_now(CallbackEvent.objects.get()).status == "done"
    assert TransferItem.objects.get(customer=wecom[1]).status == "refused"

    assert transfers_poll() == 2  # transfer_result: the two others are done
    status = dict(TransferItem.objects.values_list("customer_id", "status"))
    assert [status[c.pk] for c in wecom] == ["done", "refused", "done"]
    transfer.refresh_from_db()
    assert transfer.finished_at is not None
    assert transfers_poll() == 0

    page = client.get(f"/integrations/wecom/transfers/{transfer.pk}/").content.decode()
    for label in ("接替完毕", "客户拒绝", "仅系统内转移", "不是原投顾的企业微信好友", "84061 该成员与此客户不存在好友关系"):
        assert label in page
    assert wecom[1].name in page
    listing = client.get("/integrations/wecom/transfers/").content.decode()
    assert "离职投顾" in listing and "接替投顾" in listing


@pytest.mark.django_db
def test_resigned_transfer_goes_in_batches_of_100(client, admin_user, handover, takeover, wecom_sandbox):
    wecom, _local = _clients(handover, 105)
    wecom_sandbox.reseed_from_db(customers=200)
    client.force_login(admin_user)
    client.post(NEW, _data("resigned", handover, takeover))
    calls = wecom_sandbox.state()["transfers"]
    assert [(c["kind"], len(c["external_userid"])) for c in calls] == [("resigned", 100), ("resigned", 5)]
    assert TransferItem.objects.filter(status="waiting").count() == 105
    transfers_poll()
    assert TransferItem.objects.filter(status="done").count() == 105
    assert Transfer.objects.get().finished_at is not None


@pytest.mark.django_db
def test_when_wecom_is_busy_the_items_wait_for_the_poll(client, admin_user, handover, takeover, wecom_sandbox):
    wecom, _ = _clients(handover, 2)
    wecom_sandbox.reseed_from_db()
    wecom_sandbox.fail(path="externalcontact/resigned/transfer_customer", errcode=45009, count=10)
    client.force_login(admin_user)
    response = client.post(NEW, _data("resigned", handover, takeover))
    assert response.status_code == 302
    assert set(TransferItem.objects.values_list("status", flat=True)) == {"pending"}
    assert not Customer.objects.filter(advisor=handover).exists()  # the product side does not wait
    wecom_sandbox.failures.clear()
    transfers_poll()
    assert set(TransferItem.objects.values_list("status", flat=True)) == {"done"}


@pytest.mark.django_db
def test_form_rules_and_scope(client, branch_manager, handover, takeover, other_branch_advisor, advisor,
                              wecom_sandbox):
    client.force_login(branch_manager)
    _clients(handover, 1)
    response = client.post(NEW, _data("on_job", handover, handover))
    assert response.status_code == 400 and "不能是原投顾本人" in response.context["form"].errors["to_advisor"][0]
    response = client.post(NEW, _data("on_job", handover, other_branch_advisor))
    assert response.status_code == 400 and "to_advisor" in response.context["form"].errors
    response = client.post(NEW, _data("on_job", other_branch_advisor, handover))
    assert response.status_code == 400 and "from_advisor" in response.context["form"].errors
    response = client.post(NEW, _data("on_job", advisor, takeover))  # nobody to move
    assert response.status_code == 400 and "没有可转接的客户" in response.context["form"].errors["from_advisor"][0]
    response = client.post(NEW, {"from_advisor": handover.pk, "to_advisor": takeover.pk})
    assert "kind" in response.context["form"].errors
    assert not Transfer.objects.exists() and Customer.objects.get().advisor == handover

    # branch managers only see their branch's transfers; advisors have no access at all
    foreign = Transfer.objects.create(kind="on_job", from_advisor=other_branch_advisor, to_advisor=other_branch_advisor)
    assert client.get(f"/integrations/wecom/transfers/{foreign.pk}/").status_code == 404
    assert "advisor_other" not in client.get("/integrations/wecom/transfers/").content.decode()
    client.force_login(advisor)
    for url in ("/integrations/wecom/transfers/", NEW, f"/integrations/wecom/transfers/{foreign.pk}/"):
        assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_a_late_transfer_fail_for_an_unknown_item_is_ignored(client, wecom_sandbox):
    post_event(client, wecom_sandbox, {"Event": "change_external_contact", "ChangeType": "transfer_fail",
                                       "FailReason": "customer_limit_exceed", "UserID": "wx_nobody",
                                       "ExternalUserID": "wmNobody"})
    event = process_now(CallbackEvent.objects.get())
    assert event.status == "ignored"


@pytest.mark.django_db
def test_a_refused_or_failed_handover_moves_the_client_back_with_the_reason(client, branch_manager, handover, takeover,
                                                                          wecom_sandbox, same_branch_advisor):
    sb = wecom_sandbox
    wecom, _ = _clients(handover, 4)
    sb.reseed_from_db()
    refuses, limited, no_record, moved_on = wecom
    task = Task.objects.create(customer=refuses, assignee=handover, title="回访", due_at=timezone.now())
    client.force_login(branch_manager)
    client.post(NEW, _data("on_job", handover, takeover))
    transfer = Transfer.objects.get()
    assert not Customer.objects.filter(advisor=handover).exists()
    later_task = Task.objects.create(customer=refuses, assignee=takeover, title="接手后的新任务", due_at=timezone.now())

    # the client refuses in WeCom: transfer_fail arrives (the sandbox gives the contact back to the handover)
    pushed = sb.admin("transfers/result", {"external_userid": refuses.wecom_external_userid, "status": 3, "push": False})
    assert pushed == {"ok": True}
    post_event(client, sb, {"Event": "change_external_contact", "ChangeType": "transfer_fail",
                            "FailReason": "customer_refused", "UserID": "wx_taking",
                            "ExternalUserID": refuses.wecom_external_userid})
    event = process_now(CallbackEvent.objects.get())
    assert event.status == "done" and event.error == "已退回原投顾"
    refuses.refresh_from_db()
    task.refresh_from_db()
    later_task.refresh_from_db()
    assert refuses.advisor == handover and task.assignee == handover and later_task.assignee == takeover
    item = TransferItem.objects.get(customer=refuses)
    assert item.status == "refused" and item.reverted_at is not None
    assert item.revert_note == "客户拒绝（customer_refused）；已退回原投顾 离职投顾"

    # transfer_result: one at the takeover's limit, one without a record; the fourth was changed by hand meanwhile
    sb.admin("transfers/result", {"external_userid": limited.wecom_external_userid, "status": 4, "push": False})
    sb.admin("transfers/result", {"external_userid": no_record.wecom_external_userid, "status": 5})
    sb.admin("transfers/result", {"external_userid": moved_on.wecom_external_userid, "status": 3, "push": False})
    someone_else = same_branch_advisor
    Customer.objects.filter(pk=moved_on.pk).update(advisor=someone_else)
    transfers_poll()
    advisors = dict(Customer.objects.filter(pk__in=[c.pk for c in wecom]).values_list("pk", "advisor_id"))
    assert advisors == {refuses.pk: handover.pk, limited.pk: handover.pk, no_record.pk: handover.pk,
                        moved_on.pk: someone_else.pk}
    notes = dict(TransferItem.objects.values_list("customer_id", "revert_note"))
    assert notes[limited.pk].startswith("接替人客户数已达上限") and notes[no_record.pk].startswith("失败（企业微信无接替记录）")
    assert notes[moved_on.pk] == "客户拒绝；客户的投顾已另行变更，未退回"
    assert TransferItem.objects.get(customer=moved_on).reverted_at is None
    assert AuditLog.objects.filter(action="wecom.transfer_revert").count() == 3
    transfers_poll()  # nothing twice
    assert AuditLog.objects.filter(action="wecom.transfer_revert").count() == 3

    page = client.get(f"/integrations/wecom/transfers/{transfer.pk}/").content.decode()
    assert page.count("已退回原投顾 离职投顾") == 3 and "客户的投顾已另行变更，未退回" in page
