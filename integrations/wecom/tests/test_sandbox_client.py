"""The WeCom sandbox over real HTTP, and the client (token in Redis, refresh, back-off, errors) against it."""

import json
import urllib.request

import pytest
from django.core.cache import cache
from wechatpy.enterprise.crypto import WeChatCrypto

from integrations.wecom import sandbox as sandbox_module
from integrations.wecom.client import WecomError, wecom_client
from integrations.wecom.sandbox_data import build_corp


def cgi(sb, path, token, body=None):
    url = f"{sb.url}/cgi-bin/{path}{'&' if '?' in path else '?'}access_token={token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET")) as r:
        return json.loads(r.read())


def token_of(sb):
    with urllib.request.urlopen(f"{sb.url}/cgi-bin/gettoken?corpid={sb.corp_id}&corpsecret={sb.secret}") as r:
        return json.loads(r.read())


# --- the sandbox --------------------------------------------------------------------------------

def test_sandbox_tokens_expire_and_wrong_credentials_are_refused(wecom_sandbox):
    sb = wecom_sandbox
    answer = token_of(sb)
    assert answer["errcode"] == 0 and answer["expires_in"] == 7200
    token = answer["access_token"]
    assert cgi(sb, "externalcontact/get_follow_user_list", token)["errcode"] == 0
    assert cgi(sb, "externalcontact/get_follow_user_list", "forged")["errcode"] == 40014
    with urllib.request.urlopen(f"{sb.url}/cgi-bin/gettoken?corpid={sb.corp_id}&corpsecret=wrong") as r:
        assert json.loads(r.read())["errcode"] == 40001
    assert sb.admin("expire-tokens")["expired"] == 1
    assert cgi(sb, "externalcontact/get_follow_user_list", token) == {"errcode": 42001, "errmsg": "access_token expired"}
    sb.admin("config", {"token_ttl": 0})
    short = token_of(sb)["access_token"]
    assert cgi(sb, "externalcontact/get_follow_user_list", short)["errcode"] == 42001


def test_sandbox_pages_contacts_with_a_cursor_and_injects_failures(wecom_sandbox):
    sb = wecom_sandbox
    token = token_of(sb)["access_token"]
    users = cgi(sb, "externalcontact/get_follow_user_list", token)["follow_user"]
    assert "wx_advisor_bj" in users
    seen, cursor = [], ""
    while True:
        page = cgi(sb, "externalcontact/batch/get_by_user", token,
                   {"userid_list": users, "cursor": cursor, "limit": 7})
        assert page["errcode"] == 0
        seen += [(i["follow_info"]["userid"], i["external_contact"]["external_userid"])
                 for i in page["external_contact_list"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == sum(len(f) for f in sb.follows.values())
    sb.admin("fail", {"path": "externalcontact/batch/get_by_user", "errcode": 45009, "count": 2, "after": 1})
    body = {"userid_list": users, "limit": 7}
    assert cgi(sb, "externalcontact/batch/get_by_user", token, body)["errcode"] == 0
    assert cgi(sb, "externalcontact/batch/get_by_user", token, body)["errcode"] == 45009
    assert cgi(sb, "externalcontact/batch/get_by_user", token, body)["errcode"] == 45009
    assert cgi(sb, "externalcontact/batch/get_by_user", token, body)["errcode"] == 0


def test_sandbox_seed_is_deterministic_and_follows_the_given_customers():
    seed = {"users": [{"userid": "wx_a", "name": "甲"}, {"userid": "wx_b", "name": "乙"}],
            "customers": [{"userid": "wx_a", "name": f"客户{n}", "mobile": f"1380000{n:04d}", "gender": "M",
                           "external_userid": f"wmCUST{n}" if n % 5 else None} for n in range(60)]}
    corp = build_corp(seed)
    assert corp == build_corp(seed)
    assert {f"wmCUST{n}" for n in range(60) if n % 5} <= set(corp["contacts"])
    by_mobile = [eid for eid, f in corp["follows"].items() if eid.startswith("wm") and not eid.startswith("wmCUST")
                 and any(m.startswith("1380000") for x in f.values() for m in x["remark_mobiles"])]
    assert by_mobile  # customers without an external id are reachable by their remark mobile
    assert corp["groupchats"] and all(c["owner"] in ("wx_a", "wx_b") for c in corp["groupchats"].values())


def test_sandbox_signs_and_encrypts_callbacks_for_wechatpy(wecom_sandbox):
    sb = wecom_sandbox
    signed = sb.admin("callback", {"push": False, "fields": {
        "Event": "change_external_chat", "ChangeType": "update", "ChatId": "wr1", "UpdateDetail": "add_member",
        "MemChangeList": ["wmA", "wmB"]}})
    crypto = WeChatCrypto(sb.token, sb.aes_key, sb.corp_id)
    q = signed["query"]
    xml = crypto.decrypt_message(signed["body"], q["msg_signature"], q["timestamp"], q["nonce"])
    assert "<ChangeType><![CDATA[update]]></ChangeType>" in xml and "<Item><![CDATA[wmB]]></Item>" in xml
    tampered = sb.admin("callback", {"push": False, "tamper": True, "fields": {"Event": "change_external_tag"}})
    q = tampered["query"]
    with pytest.raises(Exception):  # noqa: B017 - wechatpy's InvalidSignatureException
        crypto.decrypt_message(tampered["body"], q["msg_signature"], q["timestamp"], q["nonce"])


def test_sandbox_add_contact_records_the_welcome_code_and_reports_an_unreachable_callback(wecom_sandbox):
    sb = wecom_sandbox
    sb.callback_url = "http://127.0.0.1:9/nowhere/"
    added = sb.admin("contacts", {"userid": "wx_advisor_bj", "name": "新客户", "state": "cw_test"})
    assert added["callback"]["error"]
    assert added["callback"]["fields"]["WelcomeCode"] == added["welcome_code"]
    token = token_of(sb)["access_token"]
    contact = cgi(sb, f"externalcontact/get?external_userid={added['external_userid']}", token)
    assert contact["follow_user"][0]["state"] == "cw_test"
    welcome = {"welcome_code": added["welcome_code"], "text": {"content": "您好"}}
    assert cgi(sb, "externalcontact/send_welcome_msg", token, welcome)["errcode"] == 0
    assert cgi(sb, "externalcontact/send_welcome_msg", token, welcome)["errcode"] == 41051  # used once
    assert sb.state()["welcome_messages"][0]["text"] == {"content": "您好"}


# --- the client ---------------------------------------------------------------------------------

def test_client_shares_one_cached_token_and_refreshes_it_once_on_42001(wecom_sandbox):
    cache.clear()
    first, second = wecom_client(), wecom_client()
    assert first.external_contact.get_follow_user_list()["errcode"] == 0
    assert second.token_cached()
    second.external_contact.get_follow_user_list()
    assert len(wecom_sandbox.tokens) == 1  # the second client (another worker) used the token in Redis
    wecom_sandbox.admin("expire-tokens")
    assert second.external_contact.get_follow_user_list()["follow_user"]
    assert second.token_refreshes == 1 and len(wecom_sandbox.tokens) == 2
    wecom_sandbox.admin("fail", {"path": "externalcontact/get_follow_user_list", "errcode": 40014, "count": 2})
    with pytest.raises(WecomError) as error:  # refreshed once, then it gives up
        first.external_contact.get_follow_user_list()
    assert error.value.errcode == 40014 and first.token_refreshes == 1


def test_client_backs_off_on_frequency_limits_then_fails(wecom_sandbox):
    client = wecom_client(backoff=(0.01, 0.01, 0.01))
    wecom_sandbox.admin("fail", {"path": "externalcontact/groupchat/list", "errcode": 45009, "count": 2})
    assert client.external_contact_group_chat.list(limit=10)["errcode"] == 0
    assert client.rate_limited == 2
    wecom_sandbox.admin("fail", {"path": "externalcontact/groupchat/list", "errcode": 45033, "count": 10})
    with pytest.raises(WecomError) as error:
        client.external_contact_group_chat.list(limit=10)
    assert error.value.errcode == 45033 and "并发调用超过企业微信限制" in error.value.message


def test_client_raises_a_clear_error_for_other_errcodes_and_posts_raw_calls(wecom_sandbox, settings):
    client = wecom_client()
    with pytest.raises(WecomError) as error:
        client.post("externalcontact/mark_tag", data={"userid": "wx_advisor_bj", "external_userid": "nobody",
                                                      "add_tag": ["x"]})
    assert error.value.errcode == 40096 and "（external_userid）无效" in error.value.message
    assert "同步" in error.value.message  # and what to do about it
    assert error.value.code == "wecom_error"
    answer = client.post("externalcontact/batch/get_by_user", data={"userid_list": ["wx_advisor_bj"], "limit": 5})
    assert len(answer["external_contact_list"]) == 5
    settings.WECOM_SECRET = "wrong"
    cache.clear()
    with pytest.raises(WecomError) as error:
        wecom_client().external_contact.get_follow_user_list()
    assert error.value.errcode == 40001 and "Secret" in error.value.message


@pytest.mark.django_db
def test_sandbox_cli_starts_from_the_seed_written_from_the_database(tmp_path):
    import subprocess
    import sys
    import time

    from django.core.management import call_command

    from core.demo import demo_staff_load
    from core.models import User
    from customers.tests.factories import CustomerFactory
    from scrm.launcher import _free_port

    demo_staff_load()
    advisor = User.objects.get(username="advisor_hz")
    for n in range(12):
        CustomerFactory(advisor=advisor, wecom_external_userid=f"wmSEED{n}", mobile=f"1370000{n:04d}")
    seed_file = tmp_path / "seed.json"
    call_command("wecom_sandbox_seed", out=str(seed_file))
    seed = json.loads(seed_file.read_text())
    assert {u["userid"] for u in seed["users"]} >= {"wx_advisor_hz", "wx_advisor_bj"}
    assert oct(seed_file.stat().st_mode & 0o777) == "0o600"
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "integrations.wecom.sandbox", "--port", str(port),
                                "--seed-file", str(seed_file)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f":{port}/cgi-bin/" in line
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sandbox/state") as r:
                    state = json.loads(r.read())
                assert state["corp_id"] == sandbox_module.DEMO_CORP_ID
                assert state["contacts"] == 40 + 12
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(10)
