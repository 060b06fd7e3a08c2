"""The WeCom API endpoints of the sandbox (paths relative to /cgi-bin/), each ``(sandbox, query, body) → dict``.

Shapes follow developer.work.weixin.qq.com: every answer has ``errcode``/``errmsg`` (added by the
server), lists are paged with an opaque ``next_cursor`` ("" on the last page).
"""

from __future__ import annotations

import secrets
import time
from copy import deepcopy
from functools import partial

from integrations.wecom.sandbox_data import WecomApiError, WecomSandbox, _cursor, _hex_id, _offset

ROUTES: dict[tuple[str, str], object] = {}


def route(method: str, path: str):
    def register(fn):
        ROUTES[(method, path)] = fn
        return fn
    return register


def _limit(value, *, default: int, maximum: int) -> int:
    try:
        limit = int(value if value not in (None, "") else default)
    except (TypeError, ValueError) as exc:
        raise WecomApiError(40058, "invalid limit") from exc
    if limit < 1 or limit > maximum:
        raise WecomApiError(40058, f"limit must be 1..{maximum}")
    return limit


# --- staff ---------------------------------------------------------------------------------------

@route("GET", "user/get")
def user_get(sb: WecomSandbox, query: dict, body: dict) -> dict:
    user = sb.user_require(query.get("userid"))
    return {"userid": user["userid"], "name": user["name"], "department": [1], "status": 1}


@route("GET", "externalcontact/get_follow_user_list")
def follow_user_list(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        following = sorted({u for f in sb.follows.values() for u in f})
    return {"follow_user": following}


# --- external contacts ---------------------------------------------------------------------------

@route("GET", "externalcontact/list")
def contact_list(sb: WecomSandbox, query: dict, body: dict) -> dict:
    userid = query.get("userid")
    sb.user_require(userid)
    with sb.lock:
        mine = sorted(eid for eid, f in sb.follows.items() if userid in f)
    if not mine:
        raise WecomApiError(84061)
    return {"external_userid": mine}


def _follow_user(sb: WecomSandbox, follow: dict) -> dict:
    shown = {k: v for k, v in follow.items() if k != "tag_id"}
    return {**deepcopy(shown), "tags": sb.follow_tags(follow)}


@route("GET", "externalcontact/get")
def contact_get(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        contact = sb.contact_require(query.get("external_userid"))
        follows = sb.follows.get(contact["external_userid"], {})
        if not follows:
            raise WecomApiError(84061)
        return {"external_contact": deepcopy(contact),
                "follow_user": [_follow_user(sb, f) for _u, f in sorted(follows.items())], "next_cursor": ""}


@route("POST", "externalcontact/batch/get_by_user")
def contact_batch_get_by_user(sb: WecomSandbox, query: dict, body: dict) -> dict:
    userids = body.get("userid_list") or ([body["userid"]] if body.get("userid") else [])
    if not userids or len(userids) > 100:
        raise WecomApiError(40058, "userid_list must hold 1..100 userids")
    for userid in userids:
        sb.user_require(userid)
    limit = _limit(body.get("limit"), default=50, maximum=100)
    offset = _offset(body.get("cursor"))
    with sb.lock:
        pairs = sorted((userid, eid) for eid, follows in sb.follows.items() for userid in follows if userid in userids)
        page = pairs[offset:offset + limit]
        items = [{"external_contact": deepcopy(sb.contacts[eid]), "follow_info": deepcopy(sb.follows[eid][userid])}
                 for userid, eid in page]
    next_offset = offset + len(page)
    return {"external_contact_list": items, "next_cursor": _cursor(next_offset) if next_offset < len(pairs) else ""}


@route("POST", "externalcontact/remark")
def contact_remark(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        follow = sb.follow_require(body.get("userid"), body.get("external_userid"))
        for key in ("remark", "description"):
            if key in body:
                follow[key] = str(body[key])
        if "remark_mobiles" in body:
            follow["remark_mobiles"] = [str(m) for m in body["remark_mobiles"] or []]
        if "remark_company" in body:
            follow["remark_corp_name"] = str(body["remark_company"])
        sb.remarks.append({k: body.get(k) for k in ("userid", "external_userid", "remark", "description",
                                                     "remark_mobiles")})
    return {}


# --- corp tags -----------------------------------------------------------------------------------

def _group_out(group: dict, only: set[str] | None = None) -> dict:
    tags = [deepcopy(t) for t in sorted(group["tags"].values(), key=lambda t: (t["order"], t["id"]))
            if not t["deleted"] and (only is None or t["id"] in only)]
    return {"group_id": group["group_id"], "group_name": group["group_name"], "create_time": group["create_time"],
            "order": group["order"], "deleted": False, "tag": tags}


@route("POST", "externalcontact/get_corp_tag_list")
def corp_tag_list(sb: WecomSandbox, query: dict, body: dict) -> dict:
    tag_ids, group_ids = set(body.get("tag_id") or []), set(body.get("group_id") or [])
    with sb.lock:
        groups = [g for g in sorted(sb.tag_groups.values(), key=lambda g: (g["order"], g["group_id"]))
                  if not g["deleted"]]
        if group_ids:
            return {"tag_group": [_group_out(g) for g in groups if g["group_id"] in group_ids]}
        if tag_ids:
            return {"tag_group": [_group_out(g, tag_ids) for g in groups if tag_ids & set(g["tags"])]}
        return {"tag_group": [_group_out(g) for g in groups]}


@route("POST", "externalcontact/add_corp_tag")
def corp_tag_add(sb: WecomSandbox, query: dict, body: dict) -> dict:
    names = [str(t.get("name") or "").strip() for t in body.get("tag") or []]
    if not names or any(not n or len(n) > 30 for n in names):
        raise WecomApiError(40058, "tag name must be 1..30 characters")
    with sb.lock:
        group = None
        if body.get("group_id"):
            group = sb.tag_groups.get(body["group_id"])
            if group is None or group["deleted"]:
                raise WecomApiError(40068, "invalid group_id")
        else:
            group_name = str(body.get("group_name") or "").strip()
            if not group_name:
                raise WecomApiError(40058, "group_id or group_name required")
            group = next((g for g in sb.tag_groups.values() if g["group_name"] == group_name and not g["deleted"]),
                         None)
            if group is None:
                group_id = _hex_id("et", "group", group_name, sb.next_serial())
                group = {"group_id": group_id, "group_name": group_name, "create_time": int(time.time()),
                         "order": int(body.get("order") or 0), "deleted": False, "tags": {}}
                sb.tag_groups[group_id] = group
        existing = {t["name"] for t in group["tags"].values() if not t["deleted"]}
        if any(n in existing for n in names) or len(set(names)) != len(names):
            raise WecomApiError(40071)
        created = []
        for spec, name in zip(body["tag"], names, strict=True):
            tag_id = _hex_id("et", "tag", group["group_name"], name, sb.next_serial())
            tag = {"id": tag_id, "name": name, "create_time": int(time.time()), "order": int(spec.get("order") or 0),
                   "deleted": False}
            group["tags"][tag_id] = tag
            created.append(deepcopy(tag))
        return {"tag_group": {"group_id": group["group_id"], "group_name": group["group_name"],
                              "create_time": group["create_time"], "order": group["order"], "tag": created}}


@route("POST", "externalcontact/edit_corp_tag")
def corp_tag_edit(sb: WecomSandbox, query: dict, body: dict) -> dict:
    target = body.get("id")
    with sb.lock:
        if target in sb.tag_groups and not sb.tag_groups[target]["deleted"]:
            group = sb.tag_groups[target]
            if body.get("name"):
                group["group_name"] = str(body["name"])
            if "order" in body:
                group["order"] = int(body["order"] or 0)
            return {}
        found = sb.tag_index().get(target or "")
        if found is None:
            raise WecomApiError(40068)
        group, tag = found
        if body.get("name"):
            if any(t["name"] == body["name"] and t["id"] != target and not t["deleted"] for t in group["tags"].values()):
                raise WecomApiError(40071)
            tag["name"] = str(body["name"])
        if "order" in body:
            tag["order"] = int(body["order"] or 0)
    return {}


@route("POST", "externalcontact/del_corp_tag")
def corp_tag_delete(sb: WecomSandbox, query: dict, body: dict) -> dict:
    tag_ids, group_ids = body.get("tag_id") or [], body.get("group_id") or []
    if not tag_ids and not group_ids:
        raise WecomApiError(40058, "tag_id or group_id required")
    with sb.lock:
        index = sb.tag_index()
        if any(t not in index for t in tag_ids) or any(g not in sb.tag_groups for g in group_ids):
            raise WecomApiError(40068)
        for tag_id in tag_ids:
            index[tag_id][1]["deleted"] = True
        for group_id in group_ids:
            sb.tag_groups[group_id]["deleted"] = True
            for tag in sb.tag_groups[group_id]["tags"].values():
                tag["deleted"] = True
        live = set(sb.tag_index())
        for follows in sb.follows.values():
            for follow in follows.values():
                follow["tag_id"] = [t for t in follow["tag_id"] if t in live]
    return {}


@route("POST", "externalcontact/mark_tag")
def tag_mark(sb: WecomSandbox, query: dict, body: dict) -> dict:
    add, remove = list(body.get("add_tag") or []), list(body.get("remove_tag") or [])
    if not add and not remove:
        raise WecomApiError(40058, "add_tag or remove_tag required")
    with sb.lock:
        follow = sb.follow_require(body.get("userid"), body.get("external_userid"))
        index = sb.tag_index()
        if any(t not in index for t in add + remove):
            raise WecomApiError(40068)
        tags = [t for t in follow["tag_id"] if t not in remove]
        tags += [t for t in add if t not in tags]
        follow["tag_id"] = tags
        sb.tag_marks.append({"userid": body["userid"], "external_userid": body["external_userid"], "add_tag": add,
                             "remove_tag": remove})
    return {}


# --- contact ways and welcome messages -----------------------------------------------------------

def _contact_way_fields(body: dict) -> dict:
    return {k: deepcopy(body[k]) for k in ("type", "scene", "style", "remark", "skip_verify", "state", "user", "party",
                                            "is_temp", "expires_in", "chat_expires_in", "unionid", "conclusions")
            if k in body}


@route("POST", "externalcontact/add_contact_way")
def contact_way_add(sb: WecomSandbox, query: dict, body: dict) -> dict:
    if body.get("type") not in (1, 2) or body.get("scene") not in (1, 2):
        raise WecomApiError(40058, "type and scene must be 1 or 2")
    users = body.get("user") or []
    if not users and not body.get("party"):
        raise WecomApiError(40058, "user or party required")
    if body.get("type") == 1 and len(users) != 1:
        raise WecomApiError(40058, "type 1 takes exactly one user")
    if len(str(body.get("state") or "")) > 30:
        raise WecomApiError(40058, "state longer than 30")
    for userid in users:
        sb.user_require(userid)
    with sb.lock:
        config_id = _hex_id("", "contact_way", sb.next_serial(), body.get("state"))[:32]
        way = {"config_id": config_id, **_contact_way_fields(body), "created_at": int(time.time())}
        answer = {"config_id": config_id}
        if body["scene"] == 2:
            way["qr_code"] = sb.qr_url(config_id)
            answer["qr_code"] = way["qr_code"]
        sb.contact_ways[config_id] = way
    return answer


def _contact_way_require(sb: WecomSandbox, config_id: str | None) -> dict:
    way = sb.contact_ways.get(config_id or "")
    if way is None:
        raise WecomApiError(40098)
    return way


@route("POST", "externalcontact/get_contact_way")
def contact_way_get(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        way = _contact_way_require(sb, body.get("config_id"))
        return {"contact_way": {k: v for k, v in deepcopy(way).items() if k != "created_at"}}


@route("POST", "externalcontact/update_contact_way")
def contact_way_update(sb: WecomSandbox, query: dict, body: dict) -> dict:
    for userid in body.get("user") or []:
        sb.user_require(userid)
    with sb.lock:
        way = _contact_way_require(sb, body.get("config_id"))
        way.update({k: v for k, v in _contact_way_fields(body).items() if k not in ("type", "scene")})
    return {}


@route("POST", "externalcontact/del_contact_way")
def contact_way_delete(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        _contact_way_require(sb, body.get("config_id"))
        del sb.contact_ways[body["config_id"]]
    return {}


@route("POST", "externalcontact/send_welcome_msg")
def welcome_send(sb: WecomSandbox, query: dict, body: dict) -> dict:
    code = body.get("welcome_code") or ""
    with sb.lock:
        entry = sb.welcome_codes.get(code)
        if entry is None or entry["used"] or entry["expires_at"] < time.time():
            raise WecomApiError(41051)
        if not body.get("text") and not body.get("attachments"):
            raise WecomApiError(40058, "text or attachments required")
        entry["used"] = True
        sb.welcome_messages.append({"welcome_code": code, "userid": entry["userid"],
                                    "external_userid": entry["external_userid"], "text": deepcopy(body.get("text")),
                                    "attachments": deepcopy(body.get("attachments") or [])})
    return {}


# --- mass messages -------------------------------------------------------------------------------

@route("POST", "externalcontact/add_msg_template")
def msg_template_add(sb: WecomSandbox, query: dict, body: dict) -> dict:
    chat_type = body.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise WecomApiError(40058, "chat_type must be single or group")
    if not body.get("text") and not body.get("attachments"):
        raise WecomApiError(40058, "text or attachments required")
    sender = body.get("sender") or ""
    if sender:
        sb.user_require(sender)
    with sb.lock:
        fail, targets = [], []
        if chat_type == "single":
            for eid in body.get("external_userid") or []:
                followers = sb.follows.get(eid, {})
                if not followers or (sender and sender not in followers):
                    fail.append(eid)
                else:
                    targets.append({"external_userid": eid, "chat_id": "", "userid": sender or sorted(followers)[0]})
        else:
            chats = [c for c in sb.groupchats.values() if c["status"] == 0 and (not sender or c["owner"] == sender)]
            targets = [{"external_userid": "", "chat_id": c["chat_id"], "userid": c["owner"]} for c in chats]
        msgid = "msg" + secrets.token_hex(12)
        sent_at = int(time.time())
        sb.msg_templates[msgid] = {
            "msgid": msgid, "chat_type": chat_type, "sender": sender, "external_userid": body.get("external_userid") or [],
            "text": deepcopy(body.get("text")), "attachments": deepcopy(body.get("attachments") or []),
            "fail_list": fail,
            "send_list": [{**t, "status": 1, "send_time": sent_at} for t in targets],  # 1 = 已发送 (the sandbox sends at once)
        }
    return {"fail_list": fail, "msgid": msgid}


@route("POST", "externalcontact/get_groupmsg_send_result")
def msg_template_result(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        template = sb.msg_templates.get(body.get("msgid") or "")
        if template is None:
            raise WecomApiError(41102)
        rows = [r for r in template["send_list"] if not body.get("userid") or r["userid"] == body["userid"]]
    limit = _limit(body.get("limit"), default=500, maximum=1000)
    offset = _offset(body.get("cursor"))
    page = rows[offset:offset + limit]
    return {"send_list": deepcopy(page), "next_cursor": _cursor(offset + limit) if offset + limit < len(rows) else ""}


# --- transfers -----------------------------------------------------------------------------------

# WeCom's rules for handing a client over (developer.work.weixin.qq.com/document/path/92125, 94081, 96331):
# the client must be a contact of the handover (84061); a client already in a handover waits for it (40129,
# 当前客户正在转接中); on the job, each client at most twice in 90 natural days. WeCom does not document the
# errcode of that quota: the sandbox answers TRANSFER_QUOTA_ERRCODE (integrations/wecom/error_codes.py has the
# same constant). A takeover who is already the client's contact is fine (WeCom just sends no add event).
TRANSFER_IN_PROGRESS_ERRCODE = 40129
TRANSFER_QUOTA_ERRCODE = 40130
ON_JOB_QUOTA, QUOTA_WINDOW_SECONDS = 2, 90 * 86400


def _transfers_accepted(sb: WecomSandbox, eid: str, *, kind: str, since: float) -> int:
    return sum(1 for call in sb.transfers if call["kind"] == kind and call.get("at", 0) >= since
               for row in call["customer"] if row["external_userid"] == eid and row["errcode"] == 0)


def _transfer(sb: WecomSandbox, query: dict, body: dict, *, kind: str) -> dict:
    handover, takeover = body.get("handover_userid"), body.get("takeover_userid")
    sb.user_require(handover)
    sb.user_require(takeover)
    external_userids = body.get("external_userid") or []
    if not external_userids or len(external_userids) > 100:
        raise WecomApiError(40058, "external_userid must hold 1..100 ids")
    answers = []
    now = time.time()
    with sb.lock:
        for eid in external_userids:
            follows = sb.follows.get(eid, {})
            if any(r["external_userid"] == eid and r["status"] == 2 for r in sb.transfer_results.values()):
                answers.append({"external_userid": eid, "errcode": TRANSFER_IN_PROGRESS_ERRCODE})
                continue
            if handover not in follows:
                answers.append({"external_userid": eid, "errcode": 84061})
                continue
            if kind == "on_job" and _transfers_accepted(sb, eid, kind=kind, since=now - QUOTA_WINDOW_SECONDS) \
                    >= ON_JOB_QUOTA:
                answers.append({"external_userid": eid, "errcode": TRANSFER_QUOTA_ERRCODE})
                continue
            # the sandbox hands over at once (status 1 接替完毕); real WeCom waits 24 h (status 2)
            follow = follows.pop(handover)
            follows.setdefault(takeover, {**follow, "userid": takeover, "oper_userid": takeover})
            record = {"kind": kind, "handover_userid": handover, "takeover_userid": takeover, "external_userid": eid,
                      "status": 1, "takeover_time": int(now)}
            sb.transfer_results[(kind, handover, eid)] = record
            answers.append({"external_userid": eid, "errcode": 0})
        sb.transfers.append({"kind": kind, "handover_userid": handover, "takeover_userid": takeover,
                             "external_userid": list(external_userids), "at": now,
                             "transfer_success_msg": body.get("transfer_success_msg", ""), "customer": answers})
    return {"customer": answers}


def _transfer_result(sb: WecomSandbox, query: dict, body: dict, *, kind: str) -> dict:
    handover, takeover = body.get("handover_userid"), body.get("takeover_userid")
    with sb.lock:
        rows = [{"external_userid": r["external_userid"], "status": r["status"], "takeover_time": r["takeover_time"]}
                for (k, h, _e), r in sorted(sb.transfer_results.items())
                if k == kind and h == handover and r["takeover_userid"] == takeover]
    offset = _offset(body.get("cursor"))
    page = rows[offset:offset + 100]
    return {"customer": page, "next_cursor": _cursor(offset + 100) if offset + 100 < len(rows) else ""}


for _kind, _prefix in (("on_job", "externalcontact/"), ("resigned", "externalcontact/resigned/")):
    route("POST", f"{_prefix}transfer_customer")(partial(_transfer, kind=_kind))
    route("POST", f"{_prefix}transfer_result")(partial(_transfer_result, kind=_kind))


# --- group chats ---------------------------------------------------------------------------------

@route("POST", "externalcontact/groupchat/list")
def groupchat_list(sb: WecomSandbox, query: dict, body: dict) -> dict:
    limit = _limit(body.get("limit"), default=0, maximum=1000)
    owners = set((body.get("owner_filter") or {}).get("userid_list") or [])
    status_filter = int(body.get("status_filter") or 0)
    with sb.lock:
        chats = [c for c in sorted(sb.groupchats.values(), key=lambda c: (c["create_time"], c["chat_id"]))
                 if (not owners or c["owner"] in owners) and (status_filter == 0 or c["status"] == status_filter)
                 and c.get("status") != -1]
    offset = _offset(body.get("cursor"))
    page = chats[offset:offset + limit]
    return {"group_chat_list": [{"chat_id": c["chat_id"], "status": c["status"]} for c in page],
            "next_cursor": _cursor(offset + limit) if offset + limit < len(chats) else ""}


@route("POST", "externalcontact/groupchat/get")
def groupchat_get(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        chat = sb.groupchats.get(body.get("chat_id") or "")
        if chat is None or chat.get("status") == -1:
            raise WecomApiError(90500)
        out = {k: deepcopy(v) for k, v in chat.items() if k != "status"}
    if not body.get("need_name"):
        for member in out["member_list"]:
            member.pop("name", None)
    return {"group_chat": out}


@route("POST", "externalcontact/groupchat/add_join_way")
def join_way_add(sb: WecomSandbox, query: dict, body: dict) -> dict:
    if body.get("scene") not in (1, 2):
        raise WecomApiError(40058, "scene must be 1 or 2")
    chat_ids = body.get("chat_id_list") or []
    if not chat_ids or len(chat_ids) > 5:
        raise WecomApiError(40058, "chat_id_list must hold 1..5 chats")
    if len(str(body.get("state") or "")) > 30:
        raise WecomApiError(40058, "state longer than 30")
    with sb.lock:
        if any(c not in sb.groupchats for c in chat_ids):
            raise WecomApiError(90500)
        config_id = _hex_id("", "join_way", sb.next_serial(), body.get("state"))[:32]
        sb.join_ways[config_id] = {
            "config_id": config_id, "scene": body["scene"], "remark": body.get("remark", ""),
            "auto_create_room": int(body.get("auto_create_room", 1)), "room_base_name": body.get("room_base_name", ""),
            "room_base_id": body.get("room_base_id", 0), "chat_id_list": list(chat_ids), "state": body.get("state", ""),
            "qr_code": sb.qr_url(f"join-{config_id}") if body["scene"] == 2 else "",
        }
    return {"config_id": config_id}


@route("POST", "externalcontact/groupchat/get_join_way")
def join_way_get(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        way = sb.join_ways.get(body.get("config_id") or "")
        if way is None:
            raise WecomApiError(40098)
        return {"join_way": deepcopy(way)}


@route("POST", "externalcontact/groupchat/del_join_way")
def join_way_delete(sb: WecomSandbox, query: dict, body: dict) -> dict:
    with sb.lock:
        if sb.join_ways.pop(body.get("config_id") or "", None) is None:
            raise WecomApiError(40098)
    return {}
