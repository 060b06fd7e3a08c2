"""The transfer preview counts what WeCom will accept, per category, and the transfer then submits only those:
nothing the preview did not announce fails. WeCom errcodes are shown in words with what to do."""

import pytest

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from integrations.wecom.client import wecom_client
from integrations.wecom.error_codes import WECOM_ERRCODES, wecom_errcode_text
from integrations.wecom.models import SyncRun, Transfer, TransferItem
from integrations.wecom.sync import wecom_sync_run
from integrations.wecom.transfers import transfer_start_and_submit, transfers_poll

NEW = "/integrations/wecom/transfers/new/"


@pytest.fixture
def staff(make_staff):
    return {
        "leaving": make_staff("advisor_leaving", "advisor", "BJ01", employee_code="E9301", wecom_userid="wx_leaving",
                              display_name="离职投顾"),
        "taking": make_staff("advisor_taking", "advisor", "BJ01", employee_code="E9302", wecom_userid="wx_taking",
                             display_name="接替投顾"),
        "third": make_staff("advisor_third", "advisor", "BJ01", employee_code="E9303", wecom_userid="wx_third",
                            display_name="第三投顾"),
    }


def _follow(sb, userid, eid):
    sb.admin("contacts", {"userid": userid, "external_userid": eid, "push": False})


@pytest.mark.django_db
def test_preview_counts_each_category_and_only_what_wecom_accepts_is_submitted(client, admin_user, staff,
                                                                               wecom_sandbox):
    sb, leaving, taking, third = wecom_sandbox, staff["leaving"], staff["taking"], staff["third"]
    done = CustomerFactory(advisor=leaving, wecom_external_userid="wmDone")
    quota = CustomerFactory(advisor=leaving, wecom_external_userid="wmQuota")
    busy = CustomerFactory(advisor=third, wecom_external_userid="wmBusy")
    sb.reseed_from_db()

    # history: done and quota go to the third advisor and are taken over (on the job) ...
    first, _ = transfer_start_and_submit(actor=admin_user, kind="on_job", from_advisor=leaving, to_advisor=third)
    transfers_poll()
    assert set(TransferItem.objects.filter(transfer=first).values_list("status", flat=True)) == {"done"}
    # ... done comes back to the leaving advisor here only (a CRM reassignment); in WeCom the third keeps them
    Customer.objects.filter(pk=done.pk).update(advisor=leaving)
    # ... the third advisor hands quota (its 2nd on-job handover in 90 days) and busy to the leaving advisor;
    # busy's handover is still waiting in WeCom
    second, _ = transfer_start_and_submit(actor=admin_user, kind="on_job", from_advisor=third, to_advisor=leaving)
    sb.admin("transfers/result", {"external_userid": "wmBusy", "status": 2})
    transfers_poll()
    assert dict(TransferItem.objects.filter(transfer=second).values_list("customer_id", "status")) == {
        quota.pk: "done", busy.pk: "waiting"}

    friends = [CustomerFactory(advisor=leaving, wecom_external_userid=f"wmFriend{i}") for i in range(2)]
    for c in friends:
        _follow(sb, "wx_leaving", c.wecom_external_userid)
    local = CustomerFactory(advisor=leaving)
    not_friend = CustomerFactory(advisor=leaving, wecom_external_userid="wmGone")
    _follow(sb, "wx_leaving", "wmGone")
    sb.admin("contacts/delete", {"userid": "wx_leaving", "external_userid": "wmGone", "by": "customer", "push": False})

    client.force_login(admin_user)
    data = {"kind": "on_job", "from_advisor": leaving.pk, "to_advisor": taking.pk}
    preview = client.get(NEW, data)
    assert preview.status_code == 200
    plan = preview.context["plan"]
    assert plan.checked_live and not plan.note
    expected = {"wecom": 2, "local": 1, "not_friend": 1, "done": 1, "in_progress": 1, "quota": 1}
    assert plan.counts == expected
    page = preview.content.decode()
    for category, n in expected.items():
        assert f'data-testid="plan-count-{category}">{n}<' in page
    rows = {r["customer"].pk: r["plan"] for r in preview.context["preview"]}
    assert rows == {friends[0].pk: "wecom", friends[1].pk: "wecom", local.pk: "local", not_friend.pk: "not_friend",
                    done.pk: "done", busy.pk: "in_progress", quota.pk: "quota"}
    assert preview.context["preview_moves"] == 5 and preview.context["preview_stays"] == 2
    assert "开始转接（5 位）" in page

    # 离职继承 has no 90-day quota (WeCom documents it for on-the-job transfers only)
    resigned = client.get(NEW, {**data, "kind": "resigned"}).context["plan"].counts
    assert resigned["quota"] == 0 and resigned["wecom"] == 3

    response = client.post(NEW, data)
    transfer = Transfer.objects.latest("pk")
    assert response.status_code == 302
    call = sb.state()["transfers"][-1]
    assert sorted(call["external_userid"]) == ["wmFriend0", "wmFriend1"]
    assert [row["errcode"] for row in call["customer"]] == [0, 0]
    items = {i.customer_id: (i.status, i.errcode) for i in TransferItem.objects.filter(transfer=transfer)}
    assert items == {friends[0].pk: ("waiting", 0), friends[1].pk: ("waiting", 0), local.pk: ("local", None),
                     not_friend.pk: ("local", 84061), done.pk: ("local", None), busy.pk: ("skipped", 40129),
                     quota.pk: ("skipped", 40130)}
    assert not TransferItem.objects.filter(transfer=transfer, status="failed").exists()
    advisors = dict(Customer.objects.values_list("pk", "advisor_id"))
    assert {c: advisors[c] for c in (busy.pk, quota.pk)} == {busy.pk: leaving.pk, quota.pk: leaving.pk}
    assert all(advisors[c.pk] == taking.pk for c in [*friends, local, not_friend, done])

    # what was not submitted is exactly what WeCom (the sandbox) refuses, for the reason the preview gave
    answer = wecom_client().post("externalcontact/transfer_customer", data={
        "handover_userid": "wx_leaving", "takeover_userid": "wx_taking",
        "external_userid": ["wmGone", "wmDone", "wmBusy", "wmQuota"]})
    assert {r["external_userid"]: r["errcode"] for r in answer["customer"]} == {
        "wmGone": 84061, "wmDone": 84061, "wmBusy": 40129, "wmQuota": 40130}

    detail = client.get(f"/integrations/wecom/transfers/{transfer.pk}/").content.decode()
    assert 'data-testid="transfer-skipped"' in detail
    for code in (84061, 40129, 40130):
        assert f"{code} {WECOM_ERRCODES[code].message}" in detail and str(WECOM_ERRCODES[code].advice) in detail


@pytest.mark.django_db
def test_without_wecom_the_preview_uses_the_last_sync_and_says_so(client, admin_user, staff, settings):
    settings.WECOM_CORP_ID = ""  # WeCom not configured: nothing can be read live
    leaving, taking = staff["leaving"], staff["taking"]
    CustomerFactory(advisor=leaving, wecom_external_userid="wmUnsynced")
    client.force_login(admin_user)
    preview = client.get(NEW, {"kind": "resigned", "from_advisor": leaving.pk, "to_advisor": taking.pk})
    plan = preview.context["plan"]
    assert not plan.checked_live and "未配置企业微信" in plan.note and plan.counts["wecom"] == 1
    assert 'data-testid="transfer-plan-note"' in preview.content.decode()


@pytest.mark.django_db
def test_sandbox_lets_a_takeover_who_is_already_a_contact_take_over(staff, wecom_sandbox):
    sb = wecom_sandbox
    sb.reseed_from_db()
    _follow(sb, "wx_leaving", "wmBoth")
    _follow(sb, "wx_taking", "wmBoth")
    answer = wecom_client().post("externalcontact/resigned/transfer_customer", data={
        "handover_userid": "wx_leaving", "takeover_userid": "wx_taking", "external_userid": ["wmBoth"]})
    assert answer["customer"] == [{"external_userid": "wmBoth", "errcode": 0}]
    assert set(sb.follows["wmBoth"]) == {"wx_taking"}


@pytest.mark.django_db
def test_every_errcode_in_the_table_is_shown_in_words_on_the_transfer_page(client, admin_user, staff):
    leaving, taking = staff["leaving"], staff["taking"]
    transfer = Transfer.objects.create(kind="resigned", from_advisor=leaving, to_advisor=taking, created_by=admin_user)
    codes = sorted(WECOM_ERRCODES)
    TransferItem.objects.bulk_create([
        TransferItem(transfer=transfer, customer=CustomerFactory(advisor=taking), external_userid=f"wm{code}",
                     status="failed", errcode=code, errmsg="raw errmsg") for code in codes])
    client.force_login(admin_user)
    page = client.get(f"/integrations/wecom/transfers/{transfer.pk}/").content.decode()
    for code in codes:
        row = WECOM_ERRCODES[code]
        assert f'data-errcode="{code}"' in page
        assert f"{code} {row.message}" in page and str(row.advice) in page, code
    assert "84061 该成员与此客户不存在好友关系" in page
    assert wecom_errcode_text(99999).startswith("99999 企业微信返回错误")  # unknown codes still say what to do
    assert wecom_errcode_text(0) == "" and wecom_errcode_text(None) == ""


@pytest.mark.django_db
def test_a_sync_run_error_says_what_the_errcode_means_and_what_to_do(wecom_sandbox):
    wecom_sandbox.fail(path="externalcontact/get_follow_user_list", errcode=60011)
    run = wecom_sync_run(kind=SyncRun.Kind.CONTACTS)
    assert run.status == "failed"
    assert "60011" in run.error and str(WECOM_ERRCODES[60011].message) in run.error
    assert str(WECOM_ERRCODES[60011].advice) in run.error
