"""The WeCom sandbox's corp (staff, external contacts, corp tags, group chats) and everything it
remembers (tokens, contact ways, join ways, welcome codes, messages, transfers, tag marks).

Standard library only; no Django. integrations/wecom/sandbox.py serves it over HTTP.

The seed is deterministic. ``seed`` (a dict, usually written by ``manage.py wecom_sandbox_seed`` from
the demo database) names the follow users and a sample of customers::

    {"users": [{"userid": "wx_advisor_bj", "name": "王磊"}, ...],
     "customers": [{"userid": "wx_advisor_bj", "name": "张三", "mobile": "138...", "gender": "M",
                    "external_userid": "wm..." | null}, ...]}

From it the sandbox builds, with ``random.Random(seed_number)``:

* every customer that has an ``external_userid``: a contact with that id, followed by its advisor
  (remark = the customer's name; half of them carry the mobile in ``remark_mobiles``) → matches by id;
* a few customers without one: a new contact whose only link is ``remark_mobiles`` → matches by mobile;
* a few contacts that share the ``unionid`` of a contact above under a new external_userid (as after
  WeCom's external_userid upgrade) → matches by unionid once the first one is linked;
* unmatched contacts (names, and mobiles that belong to nobody) → the review queue;
* corp tag groups whose tag names partly equal the product's default tags; tags on some follows;
* three group chats per follow user with that user's contacts as members.

Without a seed the six demo advisors (wx_advisor_bj …) follow only unmatched contacts.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import threading
import time
from copy import deepcopy

DEMO_USERS = [
    ("wx_advisor_bj", "王磊"), ("wx_advisor_bj2", "李娜"), ("wx_advisor_sh", "张伟"),
    ("wx_advisor_sh2", "陈静"), ("wx_advisor_sz", "刘洋"), ("wx_advisor_hz", "赵敏"),
]
# group name → tag names (several equal the product's default tags, so they link by name)
CORP_TAGS = [
    ("客户画像", ["高净值", "年轻投资者", "投资小白", "资深投资者"]),
    ("投资偏好", ["偏好稳健", "偏好进取", "基金意向", "两融意向"]),
    ("企微运营", ["已进群", "直播报名", "活动参与"]),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平", "刚", "桂英", "建华"]
NICKNAMES = ["股海行舟", "稳稳的幸福", "价值投资者", "小散一枚", "基民老王", "追风少年", "慢慢变富", "长期主义",
             "半仓哲学", "红盘日记", "北向观察", "定投达人"]
GROUP_PURPOSES = ["股友交流群", "基金定投群", "VIP 尊享群", "新客投教群"]
SEED_EPOCH = 1767225600  # 2026-01-01 00:00 UTC, the createtime of the seeded relations

ERRMSG = {
    0: "ok", 40001: "invalid credential", 40003: "invalid userid", 40013: "invalid corpid",
    40014: "invalid access_token", 40058: "invalid parameter", 40068: "invalid tagid",
    40071: "tag name exists", 40096: "invalid external userid", 41001: "access_token missing",
    41051: "invalid welcome_code", 42001: "access_token expired", 42009: "suite_access_token expired",
    45009: "api freq out of limit", 45033: "api concurrent out of limit", 45035: "api minute freq out of limit",
    60011: "no privilege to access/modify contact/party/agent", 60111: "userid not found",
    84061: "not external contact", 40098: "invalid config_id",
    41102: "invalid msgid", 90500: "invalid chat_id", 40129: "customer is being transferred",
    40130: "customer transfer quota of 90 days used up (sandbox)",
}


class WecomApiError(Exception):
    def __init__(self, errcode: int, errmsg: str | None = None):
        super().__init__(errcode)
        self.errcode, self.errmsg = errcode, errmsg or ERRMSG.get(errcode, "error")


def _hex_id(prefix: str, *parts) -> str:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return f"{prefix}{digest[:28]}"


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=") if offset else ""


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("o"):
            raise ValueError
        return max(0, int(raw[1:]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WecomApiError(40058, "invalid cursor") from exc


def _random_mobile(rng: random.Random) -> str:
    # 1990xxxxxxx is not a mainland prefix the demo uses, so these belong to nobody
    return f"199{rng.randrange(10**8):08d}"


def build_corp(seed: dict | None, *, seed_number: int = 2026, unmatched: int = 40,
               groups_per_user: int = 3) -> dict:
    """The seeded corp: users, contacts, follows, tag groups and group chats (pure data)."""
    rng = random.Random(seed_number)
    seed = seed or {}
    users = {u["userid"]: {"userid": u["userid"], "name": u.get("name") or u["userid"]}
             for u in (seed.get("users") or [{"userid": uid, "name": name} for uid, name in DEMO_USERS])}
    userids = sorted(users)
    contacts: dict[str, dict] = {}
    follows: dict[str, dict[str, dict]] = {}
    clock = [SEED_EPOCH]

    def tick() -> int:
        clock[0] += 37
        return clock[0]

    def add(external_userid: str, *, name: str, userid: str, unionid: str, gender: int, remark: str = "",
            remark_mobiles: list[str] | None = None, state: str = "") -> None:
        contacts[external_userid] = {
            "external_userid": external_userid, "name": name, "type": 1, "gender": gender, "unionid": unionid,
            "avatar": "", "corp_name": "", "corp_full_name": "",
        }
        follows.setdefault(external_userid, {})[userid] = {
            "userid": userid, "remark": remark, "description": "", "createtime": tick(), "tag_id": [],
            "remark_corp_name": "", "remark_mobiles": list(remark_mobiles or []), "oper_userid": userid,
            "add_way": rng.choice([1, 2, 3, 201]), "state": state,
        }

    customers = [c for c in seed.get("customers") or [] if c.get("userid") in users]
    with_id = [c for c in customers if c.get("external_userid")]
    without_id = [c for c in customers if not c.get("external_userid")]
    for c in with_id:
        gender = 1 if c.get("gender") == "M" else 2
        mobiles = [c["mobile"]] if c.get("mobile") and rng.random() < 0.5 else []
        add(c["external_userid"], name=rng.choice(NICKNAMES + [c["name"]]), userid=c["userid"],
            unionid=_hex_id("o", "union", c["external_userid"]), gender=gender, remark=c["name"],
            remark_mobiles=mobiles)
    for c in without_id[: max(3, len(with_id) // 8)] if without_id else []:
        if not c.get("mobile"):
            continue
        eid = _hex_id("wm", "mobile", c["mobile"])
        add(eid, name=rng.choice(NICKNAMES), userid=c["userid"], unionid=_hex_id("o", "union", eid),
            gender=1 if c.get("gender") == "M" else 2, remark=c["name"], remark_mobiles=[c["mobile"]])
    for c in with_id[: max(0, min(5, len(with_id) // 20))]:  # same person, new external_userid
        eid = _hex_id("wm", "upgraded", c["external_userid"])
        add(eid, name=rng.choice(NICKNAMES), userid=c["userid"], unionid=_hex_id("o", "union", c["external_userid"]),
            gender=1 if c.get("gender") == "M" else 2, remark="")
    for n in range(unmatched):
        eid = _hex_id("wm", "stranger", seed_number, n)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        add(eid, name=rng.choice(NICKNAMES + [name]), userid=userids[n % len(userids)],
            unionid=_hex_id("o", "union", eid) if rng.random() < 0.7 else "", gender=rng.choice([0, 1, 2]),
            remark=name if rng.random() < 0.6 else "",
            remark_mobiles=[_random_mobile(rng)] if rng.random() < 0.5 else [])

    tag_groups: dict[str, dict] = {}
    all_tags: list[str] = []
    for g_order, (group_name, names) in enumerate(CORP_TAGS):
        group_id = _hex_id("et", "group", group_name)
        tags = {}
        for t_order, name in enumerate(names):
            tag_id = _hex_id("et", "tag", group_name, name)
            tags[tag_id] = {"id": tag_id, "name": name, "create_time": SEED_EPOCH, "order": t_order, "deleted": False}
            all_tags.append(tag_id)
        tag_groups[group_id] = {"group_id": group_id, "group_name": group_name, "create_time": SEED_EPOCH,
                                "order": g_order, "deleted": False, "tags": tags}
    for eid in sorted(follows):
        for follow in follows[eid].values():
            if rng.random() < 0.3:
                follow["tag_id"] = sorted(rng.sample(all_tags, rng.randint(1, 2)))

    groupchats: dict[str, dict] = {}
    by_user: dict[str, list[str]] = {}
    for eid in sorted(follows):
        for userid in follows[eid]:
            by_user.setdefault(userid, []).append(eid)
    for userid in userids:
        mine = by_user.get(userid, [])
        for n in range(groups_per_user if mine else 0):
            chat_id = _hex_id("wr", "chat", userid, n)
            created = SEED_EPOCH + 3600 * (n + 1)
            members = [{"userid": userid, "type": 1, "join_time": created, "join_scene": 1,
                        "invitor": {"userid": userid}, "group_nickname": "", "name": users[userid]["name"]}]
            for eid in rng.sample(mine, min(len(mine), rng.randint(5, 30))):
                members.append({"userid": eid, "type": 2, "join_time": created + rng.randrange(60, 86400 * 30),
                                "join_scene": rng.choice([1, 2, 3]), "invitor": {"userid": userid},
                                "group_nickname": "", "name": contacts[eid]["name"],
                                "unionid": contacts[eid]["unionid"]})
            groupchats[chat_id] = {
                "chat_id": chat_id, "name": f"{users[userid]['name']}·{GROUP_PURPOSES[n % len(GROUP_PURPOSES)]}",
                "owner": userid, "create_time": created, "notice": "欢迎加入，理性投资，注意风险。",
                "member_list": members, "admin_list": [], "member_version": _hex_id("", "ver", chat_id, len(members)),
                "status": 0,
            }
    return {"users": users, "contacts": contacts, "follows": follows, "tag_groups": tag_groups,
            "groupchats": groupchats}


class WecomSandbox:
    """The corp plus the switches; thread-safe (one lock around every change)."""

    def __init__(self, *, corp_id: str, secret: str, token: str = "", aes_key: str = "", callback_url: str = "",
                 seed: dict | None = None, seed_number: int = 2026, token_ttl: int = 7200):
        self.corp_id, self.secret, self.token, self.aes_key = corp_id, secret, token, aes_key
        self.callback_url, self.seed, self.seed_number, self.token_ttl = callback_url, seed, seed_number, token_ttl
        self.lock = threading.RLock()
        self.url = ""
        self.reset()

    # --- state -------------------------------------------------------------------------------------
    def reset(self, seed: dict | None = None) -> None:
        with self.lock:
            if seed is not None:
                self.seed = seed
            corp = build_corp(self.seed, seed_number=self.seed_number)
            self.users, self.contacts, self.follows = corp["users"], corp["contacts"], corp["follows"]
            self.tag_groups, self.groupchats = corp["tag_groups"], corp["groupchats"]
            self.tokens: dict[str, float] = {}
            self.failures: list[dict] = []
            self.calls: dict[str, int] = {}
            self.contact_ways: dict[str, dict] = {}
            self.join_ways: dict[str, dict] = {}
            self.welcome_codes: dict[str, dict] = {}
            self.welcome_messages: list[dict] = []
            self.msg_templates: dict[str, dict] = {}
            self.transfers: list[dict] = []
            self.transfer_results: dict[tuple[str, str, str], dict] = {}  # (kind, handover, external) → record
            self.tag_marks: list[dict] = []
            self.remarks: list[dict] = []
            self.callbacks: list[dict] = []
            self.serial = 0

    # --- for tests: the admin endpoints over HTTP (``url`` is set by sandbox_serve) -----------------
    def qr_url(self, code: str) -> str:
        """Where the sandbox serves a code's QR image (WeCom's are on wework.qpic.cn, out of reach offline)."""
        return f"{self.url}/sandbox/qr/{code}.svg" if self.url else f"https://wework.qpic.cn/wwpic/sandbox/{code}/0"

    def admin(self, action: str, body: dict | None = None) -> dict:
        """POST /sandbox/<action> and return the JSON answer (raises on a non-200 answer)."""
        import json
        import urllib.request

        request = urllib.request.Request(f"{self.url}/sandbox/{action}", data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local sandbox
            return json.loads(response.read())

    def state(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/sandbox/state", timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def summary(self) -> dict:
        with self.lock:
            return {
                "corp_id": self.corp_id, "callback_url": self.callback_url,
                "users": len(self.users), "contacts": len(self.contacts),
                "follows": sum(len(f) for f in self.follows.values()),
                "corp_tags": sum(len(g["tags"]) for g in self.tag_groups.values()),
                "groupchats": len(self.groupchats), "calls": dict(self.calls),
                "tokens_issued": len(self.tokens), "pending_failures": deepcopy(self.failures),
                "contact_ways": deepcopy(list(self.contact_ways.values())),
                "join_ways": deepcopy(list(self.join_ways.values())),
                "welcome_codes": deepcopy(self.welcome_codes),
                "welcome_messages": deepcopy(self.welcome_messages),
                "msg_templates": deepcopy(list(self.msg_templates.values())),
                "transfers": deepcopy(self.transfers),
                "tag_marks": deepcopy(self.tag_marks), "remarks": deepcopy(self.remarks),
                "callbacks": deepcopy(self.callbacks),
            }

    # --- tokens and failure injection -------------------------------------------------------------
    def token_issue(self, corpid: str, corpsecret: str) -> dict:
        if corpid != self.corp_id:
            raise WecomApiError(40013)
        if corpsecret != self.secret:
            raise WecomApiError(40001)
        with self.lock:
            token = secrets.token_urlsafe(48)
            self.tokens[token] = time.time() + self.token_ttl
        return {"access_token": token, "expires_in": self.token_ttl}

    def token_check(self, token: str | None) -> None:
        if not token:
            raise WecomApiError(41001)
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None:
            raise WecomApiError(40014)
        if expires <= time.time():
            raise WecomApiError(42001)

    def tokens_expire(self) -> int:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0
            return len(self.tokens)

    def fail(self, *, path: str, errcode: int = 42001, count: int = 1, after: int = 0, errmsg: str = "",
             expire_tokens: bool = False) -> None:
        """The next ``count`` calls of ``path`` (after letting ``after`` through) answer ``errcode``.
        ``path`` is relative to /cgi-bin/ (e.g. ``externalcontact/batch/get_by_user``) or ``*``.
        With ``expire_tokens`` the call instead expires every token issued so far (a real expiry: it
        answers 42001, and so would any other call with those tokens)."""
        with self.lock:
            self.failures.append({"path": path.strip("/").removeprefix("cgi-bin/"), "errcode": int(errcode),
                                  "count": int(count), "after": int(after), "errmsg": errmsg,
                                  "expire_tokens": bool(expire_tokens)})

    def injected_failure(self, path: str) -> WecomApiError | None:
        with self.lock:
            self.calls[path] = self.calls.get(path, 0) + 1
            for failure in self.failures:
                if failure["path"] not in (path, "*"):
                    continue
                if failure["after"] > 0:
                    failure["after"] -= 1
                    continue
                failure["count"] -= 1
                if failure["count"] <= 0:
                    self.failures.remove(failure)
                if failure["expire_tokens"]:
                    self.tokens_expire()
                    return WecomApiError(42001)
                return WecomApiError(failure["errcode"], failure["errmsg"] or None)
        return None

    # --- helpers used by the API and admin --------------------------------------------------------
    def user_require(self, userid: str | None) -> dict:
        user = self.users.get(userid or "")
        if user is None:
            raise WecomApiError(60111 if userid else 40003)
        return user

    def contact_require(self, external_userid: str | None) -> dict:
        contact = self.contacts.get(external_userid or "")
        if contact is None:
            raise WecomApiError(40096)
        return contact

    def follow_require(self, userid: str, external_userid: str) -> dict:
        self.user_require(userid)
        self.contact_require(external_userid)
        follow = self.follows.get(external_userid, {}).get(userid)
        if follow is None:
            raise WecomApiError(84061)
        return follow

    def tag_index(self) -> dict[str, tuple[dict, dict]]:
        return {tag_id: (group, tag) for group in self.tag_groups.values() for tag_id, tag in group["tags"].items()
                if not tag["deleted"]}

    def follow_tags(self, follow: dict) -> list[dict]:
        index = self.tag_index()
        return [{"group_name": index[t][0]["group_name"], "tag_name": index[t][1]["name"], "tag_id": t, "type": 1}
                for t in follow["tag_id"] if t in index]
