"""Test helpers for groups: a WeCom group_chat payload and a group with members."""

import itertools

from groups.models import GroupChat, GroupMember

_seq = itertools.count(1)


def member(userid: str, *, type: int = 2, join_time: int = 1_700_000_000, name: str = "", **extra) -> dict:
    return {"userid": userid, "type": type, "join_time": join_time, "join_scene": 1, "invitor": {"userid": "x"},
            "group_nickname": "", "name": name or userid, "unionid": "", **extra}


def group_chat_payload(chat_id: str = "wrOgAAA", *, owner: str = "zhangsan", members=(), name: str = "股友交流群",
                       create_time: int = 1_690_000_000, notice: str = "") -> dict:
    return {"chat_id": chat_id, "name": name, "owner": owner, "create_time": create_time, "notice": notice,
            "member_list": list(members), "admin_list": [{"userid": owner}]}


def make_group(*, advisor=None, branch=None, members=(), **kwargs) -> GroupChat:
    """A group owned by ``advisor`` (branch from them unless given) with current customer members."""
    n = next(_seq)
    branch = branch if branch is not None else (advisor.branch if advisor else None)
    group = GroupChat.objects.create(chat_id=kwargs.pop("chat_id", f"wrTEST{n:04d}"), name=kwargs.pop("name", f"测试群{n}"),
                                     advisor=advisor, branch=branch, owner_userid=getattr(advisor, "wecom_userid", "") or "",
                                     member_count=len(members), **kwargs)
    GroupMember.objects.bulk_create([
        GroupMember(group=group, userid=c.wecom_external_userid or f"wm{c.pk}", type=2, name=f"微信昵称{c.pk}", customer=c)
        for c in members
    ])
    return group
