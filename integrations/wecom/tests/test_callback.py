"""The WeCom callback URL: URL verification (GET echostr), signed + encrypted events (POST), refusal of
anything that does not verify, deduplication of WeCom's retries, processing once, out of order."""

import base64
import secrets
import time
from urllib.parse import urlencode

import pytest
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.utils import to_text

from customers.models import Touch
from customers.tests.factories import CustomerFactory
from integrations.wecom import sandbox as sandbox_module
from integrations.wecom.callbacks import callback_process, callbacks_due
from integrations.wecom.models import CallbackEvent, ContactFollow, ExternalContact

URL = "/integrations/wecom/callback/"


# --- helpers (also used by the contact-way and transfer tests) ---------------------------------------

def signed_event(sb, fields: dict, *, tamper: bool = False) -> tuple[str, str]:
    """(url with query, body) of the POST WeCom would send for ``fields``."""
    query, body = sandbox_module.callback_request(sb, fields, tamper=tamper)
    return f"{URL}?{urlencode(query)}", body


def post_event(client, sb, fields: dict, **kwargs):
    url, body = signed_event(sb, fields, **kwargs)
    return client.post(url, data=body, content_type="text/xml")


def process_now(event: CallbackEvent, timeout: float = 15.0) -> CallbackEvent:
    """Process a stored event in this process (waiting out a worker that may hold it), and reload it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event.refresh_from_db()
        if event.status in (CallbackEvent.Status.DONE, CallbackEvent.Status.IGNORED):
            return event
        if callback_process(event.pk) is not None:
            event.refresh_from_db()
            return event
        time.sleep(0.2)
    raise AssertionError(f"event {event.pk} could not be claimed")


def wait_for(predicate, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def _encrypt(sb, plain: str, corp_id: str | None = None) -> str:
    return to_text(PrpCrypto(base64.b64decode(sb.aes_key + "=")).encrypt(plain, corp_id or sb.corp_id))


def _echo_query(sb, echostr: str, *, token: str | None = None) -> dict:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(6)
    return {"msg_signature": _get_signature(token or sb.token, timestamp, nonce, echostr), "timestamp": timestamp,
            "nonce": nonce, "echostr": echostr}


# --- GET: URL verification ---------------------------------------------------------------------------

def test_url_verification_answers_the_decrypted_echostr(client, wecom_sandbox):
    response = client.get(URL, _echo_query(wecom_sandbox, _encrypt(wecom_sandbox, "1616140317555161061")))
    assert response.status_code == 200
    assert response.content == b"1616140317555161061"


def test_url_verification_refuses_a_bad_signature_a_foreign_corp_and_missing_parameters(client, wecom_sandbox):
    echostr = _encrypt(wecom_sandbox, "1616140317555161061")
    assert client.get(URL, _echo_query(wecom_sandbox, echostr, token="not-our-token")).status_code == 403
    foreign = _encrypt(wecom_sandbox, "1616140317555161061", corp_id="ww_someone_else")
    assert client.get(URL, _echo_query(wecom_sandbox, foreign)).status_code == 403
    query = _echo_query(wecom_sandbox, echostr)
    for name in ("msg_signature", "timestamp", "nonce", "echostr"):
        assert client.get(URL, {k: v for k, v in query.items() if k != name}).status_code == 403, name
    response = client.get(URL, {**query, "echostr": "bm90IGVuY3J5cHRlZA"})  # signed over another echostr
    assert response.status_code == 403 and b"1616140317555161061" not in response.content


def test_url_verification_is_refused_when_the_callback_is_not_configured(client, settings):
    settings.WECOM_CALLBACK_TOKEN = ""
    assert client.get(URL, {"msg_signature": "x", "timestamp": "1", "nonce": "n", "echostr": "e"}).status_code == 403


# --- POST: events ------------------------------------------------------------------------------------

DEL_FOLLOW = {"Event": "change_external_contact", "ChangeType": "del_follow_user", "UserID": "wx_advisor_a",
              "ExternalUserID": "wmDeletedMe0001"}


@pytest.mark.django_db
def test_a_signed_event_is_stored_and_answered_success(client, wecom_sandbox):
    response = post_event(client, wecom_sandbox, DEL_FOLLOW)
    assert response.status_code == 200 and response.content == b"success"
    event = CallbackEvent.objects.get()
    assert (event.event, event.change_type, event.status) == ("change_external_contact", "del_follow_user", "pending")
    assert event.payload["ExternalUserID"] == "wmDeletedMe0001" and event.wecom_created_at is not None


@pytest.mark.django_db
def test_anything_that_does_not_verify_gets_403_and_stores_nothing(client, wecom_sandbox):
    sb = wecom_sandbox
    url, body = signed_event(sb, DEL_FOLLOW)
    assert post_event(client, sb, DEL_FOLLOW, tamper=True).status_code == 403  # signature broken
    # the body of another event under this event's signature
    _other_url, other_body = signed_event(sb, {**DEL_FOLLOW, "ExternalUserID": "wmSomeoneElse"})
    assert client.post(url, data=other_body, content_type="text/xml").status_code == 403
    # properly signed, but the ciphertext is not ours
    garbage = base64.b64encode(secrets.token_bytes(64)).decode()
    timestamp, nonce = str(int(time.time())), "n0nce"
    query = {"msg_signature": _get_signature(sb.token, timestamp, nonce, garbage), "timestamp": timestamp,
             "nonce": nonce}
    assert client.post(f"{URL}?{urlencode(query)}", data=f"<xml><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>",
                       content_type="text/xml").status_code == 403
    # signed and encrypted with our key, but for another corp
    xml = sandbox_module.callback_xml("ww_someone_else", DEL_FOLLOW)
    foreign = _encrypt(sb, xml, corp_id="ww_someone_else")
    query["msg_signature"] = _get_signature(sb.token, timestamp, nonce, foreign)
    assert client.post(f"{URL}?{urlencode(query)}", data=f"<xml><Encrypt><![CDATA[{foreign}]]></Encrypt></xml>",
                       content_type="text/xml").status_code == 403
    # not XML at all, an empty body, missing query parameters
    assert client.post(url, data="hello", content_type="text/plain").status_code == 403
    assert client.post(url, data="", content_type="text/xml").status_code == 403
    assert client.post(URL, data=body, content_type="text/xml").status_code == 403
    assert not CallbackEvent.objects.exists()
    assert client.put(url, data=body, content_type="text/xml").status_code == 405


@pytest.mark.django_db
def test_an_event_we_do_not_handle_is_stored_and_marked_ignored(client, wecom_sandbox):
    post_event(client, wecom_sandbox, {"Event": "change_contact", "ChangeType": "update_user", "UserID": "x"})
    event = process_now(CallbackEvent.objects.get())
    assert event.status == "ignored" and "change_contact/update_user" in event.error


@pytest.mark.django_db(transaction=True)
def test_a_retried_event_is_stored_once_and_processed_once_by_the_worker(client, wecom_sandbox, advisor,
                                                                         celery_worker):
    advisor.wecom_userid = "wx_advisor_a"
    advisor.save(update_fields=["wecom_userid"])
    customer = CustomerFactory(advisor=advisor, wecom_external_userid="wmDeletedMe0001")
    url, body = signed_event(wecom_sandbox, DEL_FOLLOW)
    for _ in range(3):  # WeCom retries when it did not get "success" in time: the very same request
        response = client.post(url, data=body, content_type="text/xml")
        assert response.status_code == 200 and response.content == b"success"
    event = CallbackEvent.objects.get()
    wait_for(lambda: CallbackEvent.objects.filter(pk=event.pk, status="done").exists(), message="the worker")

    from integrations.wecom.tasks_ops import callback_process_task

    callback_process_task.delay(event.pk, 0)  # the broker delivers the task a second time
    callback_process_task.delay(event.pk, None)
    time.sleep(2)
    event.refresh_from_db()
    assert event.attempts == 1 and event.status == "done"
    touches = Touch.objects.filter(customer=customer, source="wecom_deleted")
    assert touches.count() == 1 and "删除了投顾" in touches.get().content
    follow = ContactFollow.objects.get(contact__external_userid="wmDeletedMe0001", userid="wx_advisor_a")
    assert follow.deleted_at == event.wecom_created_at and follow.staff == advisor


@pytest.mark.django_db
def test_a_deletion_processed_before_the_add_it_follows_still_stands(client, wecom_sandbox, advisor):
    """WeCom pushed add then delete; we process the delete first (the add was retried later)."""
    sb = wecom_sandbox
    added = sb.admin("contacts", {"userid": "wx_advisor_bj", "name": "乱序客户", "push": False})
    external_userid = added["external_userid"]
    now = int(time.time())
    add = {"Event": "change_external_contact", "ChangeType": "add_external_contact", "UserID": "wx_advisor_bj",
           "ExternalUserID": external_userid, "WelcomeCode": added["welcome_code"], "CreateTime": now}
    delete = {"Event": "change_external_contact", "ChangeType": "del_follow_user", "UserID": "wx_advisor_bj",
              "ExternalUserID": external_userid, "CreateTime": now + 30}
    assert post_event(client, sb, delete).status_code == 200
    assert process_now(CallbackEvent.objects.get(change_type="del_follow_user")).status == "done"
    contact = ExternalContact.objects.get(external_userid=external_userid)
    assert contact.deleted_at is not None  # known only through its deletion so far

    assert post_event(client, sb, add).status_code == 200
    event = process_now(CallbackEvent.objects.get(change_type="add_external_contact"))
    assert event.status == "done", event.error
    contact.refresh_from_db()
    follow = ContactFollow.objects.get(contact=contact, userid="wx_advisor_bj")
    assert contact.name == "乱序客户"  # the add filled in the contact
    assert follow.deleted_at is not None and contact.deleted_at is not None  # but the later deletion stands


@pytest.mark.django_db
def test_an_edit_before_the_add_and_a_repeat_of_the_add_are_harmless(client, wecom_sandbox):
    sb = wecom_sandbox
    added = sb.admin("contacts", {"userid": "wx_advisor_bj", "name": "先改后加", "push": False})
    eid = added["external_userid"]
    now = int(time.time())
    edit = {"Event": "change_external_contact", "ChangeType": "edit_external_contact", "UserID": "wx_advisor_bj",
            "ExternalUserID": eid, "CreateTime": now}
    add = {"Event": "change_external_contact", "ChangeType": "add_external_contact", "UserID": "wx_advisor_bj",
           "ExternalUserID": eid, "CreateTime": now - 10}
    post_event(client, sb, edit)
    assert process_now(CallbackEvent.objects.get(change_type="edit_external_contact")).status == "done"
    post_event(client, sb, add)
    post_event(client, sb, {**add, "CreateTime": now - 9})  # a second, distinct push of the same add
    for event in CallbackEvent.objects.filter(change_type="add_external_contact"):
        assert process_now(event).status == "done", event.error
    contact = ExternalContact.objects.get(external_userid=eid)
    assert contact.deleted_at is None and contact.follows.get().deleted_at is None
    assert ExternalContact.objects.count() == 1


@pytest.mark.django_db
def test_an_update_of_a_group_we_have_never_seen_creates_it_and_dismiss_closes_it(client, wecom_sandbox, advisor):
    from groups.models import GroupChat

    sb = wecom_sandbox
    advisor.wecom_userid = "wx_advisor_bj"
    advisor.save(update_fields=["wecom_userid"])
    strangers = [eid for eid, follows in sb.follows.items() if "wx_advisor_bj" in follows][:3]
    chat_id = sb.admin("groupchat", {"owner": "wx_advisor_bj", "name": "股友交流群", "members": strangers[:2],
                                     "push": False})["chat_id"]
    sb.admin("groupchat/members", {"chat_id": chat_id, "add": [strangers[2]], "push": False})
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "update", "ChatId": chat_id,
                            "UpdateDetail": "add_member", "MemChangeCnt": 1, "MemChangeList": [strangers[2]]})
    event = process_now(CallbackEvent.objects.get(change_type="update"))
    assert event.status == "done", event.error
    assert event.payload["MemChangeList"] == {"Item": strangers[2]}
    group = GroupChat.objects.get(chat_id=chat_id)
    assert group.name == "股友交流群" and group.advisor == advisor and group.member_count == 4

    sb.admin("groupchat/dismiss", {"chat_id": chat_id})  # nobody listening: we push it ourselves
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "dismiss", "ChatId": chat_id})
    assert process_now(CallbackEvent.objects.get(change_type="dismiss")).status == "done"
    group.refresh_from_db()
    assert group.status == "dismissed" and group.member_count == 0
    # an update that was delayed past the dismissal changes nothing
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "update", "ChatId": chat_id,
                            "UpdateDetail": "del_member", "CreateTime": int(time.time()) - 100})
    late = process_now(CallbackEvent.objects.filter(change_type="update").order_by("-pk").first())
    assert late.status == "done" and "解散" in late.error
    group.refresh_from_db()
    assert group.status == "dismissed"


@pytest.mark.django_db
def test_corp_tag_events_refresh_the_tag_and_unlink_it_when_deleted(client, wecom_sandbox):
    from integrations.wecom.models import CorpTag
    from tagging.models import Tag

    sb = wecom_sandbox
    group_id, group = next(iter(sb.tag_groups.items()))
    tag_id, tag = next(iter(group["tags"].items()))
    ours = Tag.objects.get(code="margin_intent")
    CorpTag.objects.create(wecom_tag_id=tag_id, group_id=group_id, group_name="旧组名", name="旧名", tag=ours)
    tag["name"] = "两融意向（新）"
    post_event(client, sb, {"Event": "change_external_tag", "ChangeType": "update", "Id": tag_id, "TagType": "tag"})
    assert process_now(CallbackEvent.objects.get()).status == "done"
    row = CorpTag.objects.get(wecom_tag_id=tag_id)
    assert (row.name, row.group_name, row.tag) == ("两融意向（新）", group["group_name"], ours)
    post_event(client, sb, {"Event": "change_external_tag", "ChangeType": "delete", "Id": tag_id, "TagType": "tag"})
    assert process_now(CallbackEvent.objects.get(change_type="delete")).status == "done"
    row.refresh_from_db()
    # as a full sync does (tags_sync.corp_tags_delete): a deleted WeCom tag is no longer ours
    assert row.deleted_at is not None and row.tag is None


@pytest.mark.django_db
def test_a_tag_deleted_in_wecom_is_created_again_by_the_next_sync(client, wecom_sandbox):
    from integrations.wecom import sync
    from integrations.wecom.client import wecom_client
    from integrations.wecom.models import CorpTag, SyncRun
    from tagging.models import Tag

    fund = Tag.objects.get(code="fund_interest")  # 基金意向: in the sandbox's corp tags, linked by name
    fund.sync_to_wecom = True
    fund.save()
    assert sync.wecom_sync_run(kind=SyncRun.Kind.TAGS, requested_by="test").status == SyncRun.Status.DONE
    fund.refresh_from_db()
    old_id = fund.wecom_tag_id
    assert old_id and CorpTag.objects.get(wecom_tag_id=old_id).tag == fund
    # someone deletes it in WeCom's admin console; WeCom pushes the deletion
    wecom_client().post("externalcontact/del_corp_tag", data={"tag_id": [old_id]})
    post_event(client, wecom_sandbox, {"Event": "change_external_tag", "ChangeType": "delete", "Id": old_id,
                                       "TagType": "tag"})
    assert process_now(CallbackEvent.objects.get(change_type="delete")).status == "done"
    fund.refresh_from_db()
    assert fund.wecom_tag_id == ""
    # still marked for WeCom: the next sync creates it there again and links it (before: it kept the dead id)
    run = sync.wecom_sync_run(kind=SyncRun.Kind.TAGS, requested_by="test")
    assert run.status == SyncRun.Status.DONE, run.error
    fund.refresh_from_db()
    assert fund.wecom_tag_id not in ("", old_id) and CorpTag.objects.get(wecom_tag_id=fund.wecom_tag_id).tag == fund
    assert CorpTag.objects.get(wecom_tag_id=old_id).deleted_at is not None


@pytest.mark.django_db
def test_a_failed_event_is_retried_with_backoff_until_the_limit(client, wecom_sandbox, settings):
    from datetime import timedelta

    from django.utils import timezone

    sb = wecom_sandbox
    chat_id = sb.admin("groupchat", {"owner": "wx_advisor_bj", "name": "重试群", "push": False})["chat_id"]
    sb.fail(path="externalcontact/groupchat/get", errcode=60011, count=10)
    post_event(client, sb, {"Event": "change_external_chat", "ChangeType": "create", "ChatId": chat_id})
    event = CallbackEvent.objects.get()
    assert callback_process(event.pk, expected_attempts=0) == "failed"
    event.refresh_from_db()
    assert event.attempts == 1 and "60011" in event.error
    assert callback_process(event.pk, expected_attempts=0) is None  # that attempt was made already
    now = timezone.now()
    assert callbacks_due(now) == []  # backoff not over yet
    assert callbacks_due(now + timedelta(minutes=1, seconds=5)) == [(event.pk, 1)]
    CallbackEvent.objects.filter(pk=event.pk).update(attempts=6)
    assert callbacks_due(now + timedelta(days=1)) == []  # gave up: it stays visible as failed
    sb.failures.clear()
    CallbackEvent.objects.filter(pk=event.pk).update(attempts=1)
    assert callback_process(event.pk, expected_attempts=1) == "done"


@pytest.mark.django_db
def test_a_pending_event_whose_task_was_lost_is_picked_up(client, wecom_sandbox):
    from datetime import timedelta

    from django.utils import timezone

    post_event(client, wecom_sandbox, DEL_FOLLOW)
    event = CallbackEvent.objects.get()
    assert callbacks_due() == []
    assert callbacks_due(timezone.now() + timedelta(minutes=3)) == [(event.pk, 0)]


@pytest.mark.django_db
def test_admins_see_the_callback_log_with_ignored_events(client, wecom_sandbox, admin_user, operator):
    post_event(client, wecom_sandbox, {"Event": "change_contact", "ChangeType": "update_user", "UserID": "x"})
    process_now(CallbackEvent.objects.get())
    client.force_login(admin_user)
    page = client.get("/integrations/wecom/callback/events/", {"status": "ignored"}).content.decode()
    assert "change_contact" in page and "已忽略" in page and "/integrations/wecom/callback/" in page
    client.force_login(operator)
    assert client.get("/integrations/wecom/callback/events/").status_code == 404


# --- refused before any signature check or XML parsing -------------------------------------------------

@pytest.mark.parametrize("skew_minutes", [-6, 6])
def test_a_correctly_signed_callback_more_than_five_minutes_off_is_refused(db, client, wecom_sandbox, skew_minutes):
    import time_machine
    from django.utils import timezone

    url, body = signed_event(wecom_sandbox, {"Event": "change_external_contact", "ChangeType": "add_external_contact",
                                             "UserID": "u1", "ExternalUserID": "wm_replay"})
    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=skew_minutes)):
        assert client.post(url, data=body, content_type="text/xml").status_code == 403
    assert not CallbackEvent.objects.exists()
    assert client.post(url, data=body, content_type="text/xml").status_code == 200  # within the window: accepted


def test_an_oversized_body_is_refused_without_being_parsed(db, client, wecom_sandbox, monkeypatch):
    from wechatpy.enterprise.crypto import WeChatCrypto

    def must_not_run(*args, **kwargs):
        raise AssertionError("parsed an oversized body")

    monkeypatch.setattr(WeChatCrypto, "decrypt_message", must_not_run)
    url, _body = signed_event(wecom_sandbox, {"Event": "change_external_contact"})
    huge = "<xml>" + "<a>x</a>" * 20_000 + "</xml>"  # 160 KB
    assert client.post(url, data=huge, content_type="text/xml").status_code == 403
    assert not CallbackEvent.objects.exists()
