"""A local stand-in for WeCom (企业微信): the product reaches it only through WECOM_API_BASE_URL, exactly as
it reaches https://qyapi.weixin.qq.com. Standard library HTTP server (+ wechatpy's AES for callbacks); no Django.

    python -m integrations.wecom.sandbox --port 8766 [--callback-url URL] [--corp-id ID --secret S
        --token T --aes-key K] [--seed-file seed.json] [--token-ttl 7200]

Defaults come from WECOM_CORP_ID / WECOM_SECRET / WECOM_CALLBACK_TOKEN / WECOM_CALLBACK_AES_KEY, else the
demo values below. The seed file is written by ``manage.py wecom_sandbox_seed`` (see sandbox_data.py).

WeCom API (``/cgi-bin/…``, answers ``{"errcode": 0, "errmsg": "ok", …}``; see sandbox_api.py):
``gettoken`` (tokens expire after ``--token-ttl``; an unknown token → 40014, an expired one → 42001),
``user/get``, ``externalcontact/{get_follow_user_list, list, get, batch/get_by_user, remark,
get_corp_tag_list, add_corp_tag, edit_corp_tag, del_corp_tag, mark_tag, add_contact_way, get_contact_way,
update_contact_way, del_contact_way, send_welcome_msg, add_msg_template, get_groupmsg_send_result,
transfer_customer, transfer_result, resigned/transfer_customer, resigned/transfer_result,
groupchat/list, groupchat/get, groupchat/add_join_way, groupchat/get_join_way, groupchat/del_join_way}``.

Admin (``/sandbox/…``, JSON, no WeCom auth; for tests and the demo):

``GET  /sandbox/state``                 what was sent and done (welcome messages, msg templates, transfers,
                                         contact/join ways, tag marks, remarks, callbacks pushed, calls per path)
``POST /sandbox/reset``                 back to the seed (``{"seed": {...}}`` replaces the seed)
``POST /sandbox/config``                ``{"callback_url": ..., "token_ttl": ...}``
``POST /sandbox/fail``                  ``{"path": "externalcontact/batch/get_by_user" | "*", "errcode": 42001,
                                         "count": 1, "after": 0, "expire_tokens": false}``: the next ``count``
                                         calls after ``after`` answer that errcode (``expire_tokens``: that
                                         call expires every token issued so far and answers 42001)
``POST /sandbox/expire-tokens``         every token issued so far answers 42001 from now on
``POST /sandbox/contacts``              ``{"userid", "external_userid"?, "name"?, "unionid"?, "state"?,
                                         "remark"?, "remark_mobiles"?, "push": true}``: a client adds the staff
                                         member; pushes ``add_external_contact`` with a WelcomeCode
``POST /sandbox/contacts/delete``       ``{"userid", "external_userid", "by": "staff" | "customer"}``: pushes
                                         ``del_external_contact`` (staff deleted the client) or ``del_follow_user``
``POST /sandbox/groupchat``             ``{"owner", "name", "members": [external_userid…]}``: a new group, pushes create
``POST /sandbox/groupchat/members``     ``{"chat_id", "add": [...], "remove": [...]}``: pushes update add_member /
                                         del_member
``POST /sandbox/groupchat/dismiss``     ``{"chat_id"}``: pushes dismiss
``POST /sandbox/callback``              ``{"fields": {"Event": ..., "ChangeType": ..., ...}, "push": true,
                                         "tamper": false}``: any callback; with ``"push": false`` it answers the
                                         signed request (``query``, ``body``) without sending it; ``tamper`` breaks
                                         the signature
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse
from xml.sax.saxutils import escape

from integrations.sandbox_http import JsonHandler, serve_in_thread, serve_until_interrupted
from integrations.wecom.sandbox_api import ROUTES
from integrations.wecom.sandbox_data import WecomApiError, WecomSandbox, _hex_id

DEMO_CORP_ID = "ww5a0dbox0c0de2026"
DEMO_SECRET = "sandbox-customer-contact-secret"
DEMO_CALLBACK_TOKEN = "sandboxCallbackToken2026"
DEMO_CALLBACK_AES_KEY = "c2FuZGJveEFFU2tleUZvcldlQ29tMjAyNnNjcm0xMjM"  # 43 characters, as WeCom's EncodingAESKey
WELCOME_CODE_TTL = 20  # seconds, as WeCom


# --- callbacks -----------------------------------------------------------------------------------

def _xml_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "".join(f"<Item><![CDATA[{v}]]></Item>" for v in value)
    if isinstance(value, int):
        return str(value)
    return f"<![CDATA[{value}]]>"


def callback_xml(corp_id: str, fields: dict) -> str:
    body = {"ToUserName": corp_id, "FromUserName": "sys", "CreateTime": int(time.time()), "MsgType": "event", **fields}
    return "<xml>" + "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in body.items()) + "</xml>"


def callback_request(sb: WecomSandbox, fields: dict, *, tamper: bool = False) -> tuple[dict, str]:
    """The query string and body WeCom would POST for this event (signed + AES-encrypted)."""
    from wechatpy.crypto import _get_signature
    from wechatpy.enterprise.crypto import PrpCrypto
    from wechatpy.utils import to_text

    if not sb.token or not sb.aes_key:
        raise ValueError("the sandbox has no callback token / AES key")
    plain = callback_xml(sb.corp_id, fields)
    key = base64.b64decode(sb.aes_key + "=")
    encrypted = to_text(PrpCrypto(key).encrypt(plain, sb.corp_id))
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    signature = _get_signature(sb.token, timestamp, nonce, encrypted)
    if tamper:
        signature = ("0" if signature[0] != "0" else "1") + signature[1:]
    body = (f"<xml><ToUserName><![CDATA[{escape(sb.corp_id)}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>")
    return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body


def callback_push(sb: WecomSandbox, fields: dict, *, tamper: bool = False) -> dict:
    """POST the event to the callback URL; the result is recorded in the state and returned."""
    record: dict = {"fields": fields, "url": sb.callback_url, "status": None, "response": "", "error": ""}
    if not sb.callback_url:
        record["error"] = "no callback URL configured"
    else:
        query, body = callback_request(sb, fields, tamper=tamper)
        separator = "&" if "?" in sb.callback_url else "?"
        request = urllib.request.Request(f"{sb.callback_url}{separator}{urlencode(query)}", data=body.encode(),
                                         headers={"Content-Type": "text/xml; charset=utf-8"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a configured local URL
                record["status"] = response.status
                record["response"] = response.read(300).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
            record["response"] = exc.read(300).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
    with sb.lock:
        sb.callbacks.append(record)
    return record


# --- admin actions -------------------------------------------------------------------------------

def contact_add(sb: WecomSandbox, body: dict) -> dict:
    userid = body.get("userid")
    sb.user_require(userid)
    with sb.lock:
        serial = sb.next_serial()
        eid = body.get("external_userid") or _hex_id("wm", "added", userid, serial, time.time_ns())
        contact = sb.contacts.get(eid)
        if contact is None:
            contact = {"external_userid": eid, "name": body.get("name") or f"微信用户{serial}", "type": 1,
                       "gender": int(body.get("gender") or 0),
                       "unionid": body.get("unionid") if "unionid" in body else _hex_id("o", "union", eid),
                       "avatar": "", "corp_name": "", "corp_full_name": ""}
            sb.contacts[eid] = contact
        state = str(body.get("state") or "")
        sb.follows.setdefault(eid, {})[userid] = {
            "userid": userid, "remark": body.get("remark", ""), "description": "", "createtime": int(time.time()),
            "tag_id": [], "remark_corp_name": "", "remark_mobiles": list(body.get("remark_mobiles") or []),
            "oper_userid": eid, "add_way": 1 if state else 0, "state": state,
        }
        welcome_code = secrets.token_urlsafe(24)
        sb.welcome_codes[welcome_code] = {"userid": userid, "external_userid": eid, "used": False,
                                          "expires_at": time.time() + WELCOME_CODE_TTL}
    fields = {"Event": "change_external_contact", "ChangeType": "add_external_contact", "UserID": userid,
              "ExternalUserID": eid, "WelcomeCode": welcome_code}
    if state:
        fields["State"] = state
    answer = {"external_userid": eid, "welcome_code": welcome_code}
    if body.get("push", True):
        answer["callback"] = callback_push(sb, fields)
    return answer


def contact_delete(sb: WecomSandbox, body: dict) -> dict:
    userid, eid = body.get("userid"), body.get("external_userid")
    with sb.lock:
        sb.follow_require(userid, eid)
        del sb.follows[eid][userid]
    change = "del_follow_user" if body.get("by") == "customer" else "del_external_contact"
    fields = {"Event": "change_external_contact", "ChangeType": change, "UserID": userid, "ExternalUserID": eid}
    if change == "del_external_contact":
        fields["Source"] = "DELETE_BY_TRANSFER" if body.get("by") == "transfer" else ""
    return {"callback": callback_push(sb, fields)} if body.get("push", True) else {}


def _member(sb: WecomSandbox, member_id: str, scene: int, invitor: str) -> dict:
    contact = sb.contacts.get(member_id)
    if contact is None and member_id not in sb.users:
        raise WecomApiError(40096)
    if contact:
        return {"userid": member_id, "type": 2, "join_time": int(time.time()), "join_scene": scene,
                "invitor": {"userid": invitor}, "group_nickname": "", "name": contact["name"],
                "unionid": contact["unionid"]}
    return {"userid": member_id, "type": 1, "join_time": int(time.time()), "join_scene": scene,
            "invitor": {"userid": invitor}, "group_nickname": "", "name": sb.users[member_id]["name"]}


def groupchat_create(sb: WecomSandbox, body: dict) -> dict:
    owner = body.get("owner")
    sb.user_require(owner)
    with sb.lock:
        chat_id = _hex_id("wr", "chat", owner, sb.next_serial(), time.time_ns())
        members = [_member(sb, owner, 1, owner)] + [_member(sb, m, 1, owner) for m in body.get("members") or []]
        sb.groupchats[chat_id] = {"chat_id": chat_id, "name": body.get("name") or "新建群聊", "owner": owner,
                                  "create_time": int(time.time()), "notice": body.get("notice", ""),
                                  "member_list": members, "admin_list": [], "member_version": secrets.token_hex(16),
                                  "status": 0}
    fields = {"Event": "change_external_chat", "ChangeType": "create", "ChatId": chat_id}
    return {"chat_id": chat_id, "callback": callback_push(sb, fields)} if body.get("push", True) else {"chat_id": chat_id}


def groupchat_members(sb: WecomSandbox, body: dict) -> dict:
    chat_id = body.get("chat_id") or ""
    results = []
    with sb.lock:
        chat = sb.groupchats.get(chat_id)
        if chat is None:
            raise WecomApiError(90500)
        present = {m["userid"] for m in chat["member_list"]}
        added = [m for m in body.get("add") or [] if m not in present]
        removed = [m for m in body.get("remove") or [] if m in present]
        scene = int(body.get("join_scene") or 3)  # 3 = 通过扫描群二维码入群
        for member_id in added:
            chat["member_list"].append(_member(sb, member_id, scene, chat["owner"]))
        chat["member_list"] = [m for m in chat["member_list"] if m["userid"] not in removed]
        last = chat["member_version"]
        chat["member_version"] = secrets.token_hex(16)
        current = chat["member_version"]
    if not body.get("push", True):
        return {"added": added, "removed": removed}
    if added:
        results.append(callback_push(sb, {
            "Event": "change_external_chat", "ChangeType": "update", "ChatId": chat_id, "UpdateDetail": "add_member",
            "JoinScene": scene, "MemChangeCnt": len(added), "MemChangeList": added, "LastMemVer": last,
            "CurMemVer": current}))
    if removed:
        results.append(callback_push(sb, {
            "Event": "change_external_chat", "ChangeType": "update", "ChatId": chat_id, "UpdateDetail": "del_member",
            "QuitScene": int(body.get("quit_scene") or 0), "MemChangeCnt": len(removed), "MemChangeList": removed,
            "LastMemVer": last, "CurMemVer": current}))
    return {"added": added, "removed": removed, "callbacks": results}


def groupchat_dismiss(sb: WecomSandbox, body: dict) -> dict:
    chat_id = body.get("chat_id") or ""
    with sb.lock:
        chat = sb.groupchats.get(chat_id)
        if chat is None:
            raise WecomApiError(90500)
        chat["status"] = -1
    return {"callback": callback_push(sb, {"Event": "change_external_chat", "ChangeType": "dismiss", "ChatId": chat_id})}


def callback_custom(sb: WecomSandbox, body: dict) -> dict:
    fields = body.get("fields") or {}
    if not fields.get("Event"):
        raise ValueError("fields.Event is required")
    if body.get("push", True):
        return {"callback": callback_push(sb, fields, tamper=bool(body.get("tamper")))}
    query, xml = callback_request(sb, fields, tamper=bool(body.get("tamper")))
    return {"query": query, "body": xml}


def transfer_outcome(sb: WecomSandbox, body: dict) -> dict:
    """Settle a handover the sandbox completed at once otherwise: ``status`` 2 waiting, 3 refused by the client,
    4 takeover at their limit, 5 no record. A refusal or limit gives the contact back to the handover advisor
    (as in WeCom) and, with ``push`` (default), pushes transfer_fail."""
    eid, status = body.get("external_userid"), int(body.get("status") or 0)
    if status not in (1, 2, 3, 4, 5):
        raise ValueError("status must be 1..5")
    with sb.lock:
        record = next((r for (_k, _h, e), r in sb.transfer_results.items() if e == eid), None)
        if record is None:
            raise ValueError(f"no transfer of {eid}")
        record["status"] = status
        follows = sb.follows.get(eid, {})
        if status in (3, 4) and record["takeover_userid"] in follows:
            follow = follows.pop(record["takeover_userid"])
            follows[record["handover_userid"]] = {**follow, "userid": record["handover_userid"]}
    if status not in (3, 4) or not body.get("push", True):
        return {"ok": True}
    reason = "customer_refused" if status == 3 else "customer_limit_exceed"
    return {"callback": callback_push(sb, {"Event": "change_external_contact", "ChangeType": "transfer_fail",
                                           "FailReason": reason, "UserID": record["takeover_userid"],
                                           "ExternalUserID": eid})}


ADMIN_POST = {
    "contacts": contact_add, "contacts/delete": contact_delete, "groupchat": groupchat_create,
    "groupchat/members": groupchat_members, "groupchat/dismiss": groupchat_dismiss, "callback": callback_custom,
    "transfers/result": transfer_outcome,
}


def qr_svg(code: str, size: int = 25) -> str:
    """A QR-looking picture for a sandbox code (finder squares and modules from the code's hash): it shows
    where the real QR goes; it does not scan."""
    import hashlib

    bits = "".join(f"{b:08b}" for b in hashlib.sha256(code.encode()).digest() * 3)
    cells = []
    for y in range(size):
        for x in range(size):
            finder = any(x0 <= x < x0 + 7 and y0 <= y < y0 + 7 for x0, y0 in ((0, 0), (size - 7, 0), (0, size - 7)))
            if finder:
                dx, dy = min(x % (size - 7) if x >= size - 7 else x, 6), min(y % (size - 7) if y >= size - 7 else y, 6)
                on = dx in (0, 6) or dy in (0, 6) or (2 <= dx <= 4 and 2 <= dy <= 4)
            else:
                on = bits[(y * size + x) % len(bits)] == "1"
            if on:
                cells.append(f'<rect x="{x + 2}" y="{y + 2}" width="1" height="1"/>')
    side = size + 4
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" width="220" height="220" '
            f'shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="#fff"/>'
            f'<g fill="#111">{"".join(cells)}</g></svg>')


# --- HTTP ----------------------------------------------------------------------------------------

def _handler(sb: WecomSandbox):
    class Handler(JsonHandler):
        server_version = "WecomSandbox/1"

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            data = json.loads(raw.decode("utf-8") or "{}") if raw else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            return data

        def _dispatch(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            path = url.path.rstrip("/")
            try:
                body = self._body() if method == "POST" else {}
            except (ValueError, UnicodeDecodeError):
                if path.startswith("/sandbox/"):
                    return self._answer(400, {"error": "invalid JSON"})
                return self._answer(200, {"errcode": 47001, "errmsg": "data format error"})
            if path.startswith("/sandbox/"):
                return self._admin(method, path.removeprefix("/sandbox/"), body)
            if not path.startswith("/cgi-bin/"):
                return self._answer(404, {"errcode": 404, "errmsg": "not found"})
            api_path = path.removeprefix("/cgi-bin/")
            try:
                if api_path == "gettoken":
                    failure = sb.injected_failure(api_path)
                    if failure:
                        raise failure
                    result = sb.token_issue(query.get("corpid", ""), query.get("corpsecret", ""))
                else:
                    handler = ROUTES.get((method, api_path))
                    if handler is None:
                        if any(p == api_path for _m, p in ROUTES):
                            other = "POST" if method == "GET" else "GET"
                            raise WecomApiError(43002 if other == "POST" else 43004, f"require {other} method")
                        return self._answer(404, {"errcode": 404, "errmsg": f"unknown api {api_path}"})
                    sb.token_check(query.get("access_token"))
                    failure = sb.injected_failure(api_path)
                    if failure:
                        raise failure
                    result = handler(sb, query, body)
            except WecomApiError as exc:
                return self._answer(200, {"errcode": exc.errcode, "errmsg": exc.errmsg})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                return self._answer(200, {"errcode": 40058, "errmsg": f"invalid parameter: {exc}"})
            self._answer(200, {"errcode": 0, "errmsg": "ok", **result})

        def _admin(self, method: str, action: str, body: dict) -> None:
            try:
                if method == "GET" and action.startswith("qr/"):
                    return self._svg(qr_svg(action.removeprefix("qr/").removesuffix(".svg")))
                if method == "GET" and action == "state":
                    return self._answer(200, sb.summary())
                if method != "POST":
                    return self._answer(404, {"error": "not found"})
                if action == "reset":
                    sb.reset(body.get("seed"))
                    return self._answer(200, {"ok": True, **{k: v for k, v in sb.summary().items()
                                                             if k in ("users", "contacts", "groupchats")}})
                if action == "config":
                    with sb.lock:
                        if "callback_url" in body:
                            sb.callback_url = body["callback_url"] or ""
                        if "token_ttl" in body:
                            sb.token_ttl = int(body["token_ttl"])
                    return self._answer(200, {"ok": True})
                if action == "fail":
                    sb.fail(path=str(body.get("path") or "*"), errcode=int(body.get("errcode", 45009)),
                            count=int(body.get("count", 1)), after=int(body.get("after", 0)),
                            errmsg=str(body.get("errmsg") or ""), expire_tokens=bool(body.get("expire_tokens")))
                    return self._answer(200, {"ok": True})
                if action == "expire-tokens":
                    return self._answer(200, {"expired": sb.tokens_expire()})
                handler = ADMIN_POST.get(action)
                if handler is None:
                    return self._answer(404, {"error": "not found"})
                return self._answer(200, handler(sb, body))
            except WecomApiError as exc:
                return self._answer(400, {"error": exc.errmsg, "errcode": exc.errcode})
            except (KeyError, TypeError, ValueError) as exc:
                return self._answer(400, {"error": str(exc)})

        def _svg(self, svg: str) -> None:
            data = svg.encode()
            self.send_response(200)
            self.send_header("Content-Type", "image/svg+xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            self._dispatch("GET")

        def do_POST(self):  # noqa: N802
            self._dispatch("POST")

    return Handler


def sandbox_serve(*, host: str = "127.0.0.1", port: int = 0, corp_id: str = DEMO_CORP_ID, secret: str = DEMO_SECRET,
                  token: str = DEMO_CALLBACK_TOKEN, aes_key: str = DEMO_CALLBACK_AES_KEY, **kwargs
                  ) -> tuple[WecomSandbox, ThreadingHTTPServer]:
    """Start the sandbox in a background thread (tests); ``server.server_address`` has the port and
    ``sandbox.url`` the base URL."""
    sandbox = WecomSandbox(corp_id=corp_id, secret=secret, token=token, aes_key=aes_key, **kwargs)
    server = serve_in_thread(_handler(sandbox), host=host, port=port, name="wecom-sandbox")
    sandbox.url = f"http://{host}:{server.server_address[1]}"
    return sandbox, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local WeCom (企业微信) sandbox for the SCRM")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--callback-url", default=os.environ.get("WECOM_SANDBOX_CALLBACK_URL", ""))
    parser.add_argument("--corp-id", default=os.environ.get("WECOM_CORP_ID") or DEMO_CORP_ID)
    parser.add_argument("--secret", default=os.environ.get("WECOM_SECRET") or DEMO_SECRET)
    parser.add_argument("--token", default=os.environ.get("WECOM_CALLBACK_TOKEN") or DEMO_CALLBACK_TOKEN)
    parser.add_argument("--aes-key", default=os.environ.get("WECOM_CALLBACK_AES_KEY") or DEMO_CALLBACK_AES_KEY)
    parser.add_argument("--seed-file", default="", help="JSON written by manage.py wecom_sandbox_seed")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--token-ttl", type=int, default=7200)
    args = parser.parse_args(argv)
    if len(args.aes_key) != 43:
        parser.error("--aes-key must be 43 characters (WeCom's EncodingAESKey)")
    seed = None
    if args.seed_file and os.path.exists(args.seed_file):
        with open(args.seed_file, encoding="utf-8") as handle:
            seed = json.load(handle)
    sandbox = WecomSandbox(corp_id=args.corp_id, secret=args.secret, token=args.token, aes_key=args.aes_key,
                           callback_url=args.callback_url, seed=seed, seed_number=args.seed, token_ttl=args.token_ttl)
    server = ThreadingHTTPServer((args.host, args.port), _handler(sandbox))
    sandbox.url = f"http://{args.host}:{server.server_address[1]}"
    summary = sandbox.summary()
    print(f"WeCom sandbox on http://{args.host}:{server.server_address[1]}/cgi-bin/ (corp {args.corp_id}: "
          f"{summary['users']} staff, {summary['contacts']} contacts, {summary['groupchats']} group chats; "
          f"callbacks → {args.callback_url or 'nowhere'})", flush=True)
    return serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
