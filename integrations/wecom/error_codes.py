"""WeCom (企业微信) errcodes in words: what happened and what to do, in one table.

Every place that shows a WeCom errcode goes through it: ``WecomError``'s message (sync runs, callback events,
contact ways, group join ways: anything that stores or shows ``exc.message``) and the ``wecom_errcode``
template filter (``{% load wecom %}``; transfer items keep WeCom's per-client errcode).

Meanings follow WeCom's global errcode table (developer.work.weixin.qq.com/document/path/90313) and the
customer-contact pages; where WeCom documents a code only for another API, the text says so rather than guess.
``TRANSFER_QUOTA_ERRCODE`` is the one code WeCom does not document (the on-the-job transfer quota: each client
at most twice in 90 natural days); the sandbox answers it, and it is the only constant to change if a real
corp answers another.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

TRANSFER_IN_PROGRESS_ERRCODE = 40129  # 当前客户正在转接中
TRANSFER_QUOTA_ERRCODE = 40130  # not documented by WeCom: see the module docstring
NOT_A_CONTACT_ERRCODE = 84061


@dataclass(frozen=True)
class WecomErrcode:
    code: int
    message: str
    advice: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}。{self.advice}"


_RETRY = _("系统会自动稍后重试；若持续出现，请减少同时进行的同步或批量操作。")
_TOKEN = _("系统会自动重新获取令牌并重试一次，一般无需处理；若持续出现，请检查 WECOM_CORP_ID 与 WECOM_SECRET 是否属于同一企业。")

WECOM_ERRCODES: dict[int, WecomErrcode] = {e.code: e for e in [
    WecomErrcode(-1, _("企业微信系统繁忙"), _("稍后重试即可，系统会自动重试。")),
    WecomErrcode(40001, _("Secret 不正确"),
                 _("请检查 WECOM_SECRET：应为「客户联系」Secret，或已加入「可调用应用」的自建应用 Secret。")),
    WecomErrcode(40003, _("成员 userid 无效"), _("请检查该投顾资料中绑定的企业微信 userid 是否正确。")),
    WecomErrcode(40013, _("企业 ID 不正确"), _("请检查 WECOM_CORP_ID（企业微信管理后台「我的企业」中可查看）。")),
    WecomErrcode(40014, _("access_token 无效"), _TOKEN),
    WecomErrcode(40058, _("参数不合法"), _("这通常是本系统的问题：请把这条记录（含企业微信原文）交给技术支持。")),
    WecomErrcode(40068, _("企业标签不存在"), _("标签可能已在企业微信中删除：请立即同步「企业标签」后再试。")),
    WecomErrcode(40071, _("同名标签已存在"), _("请改名，或在企业微信管理后台合并同名标签后再同步。")),
    WecomErrcode(40096, _("客户的企业微信联系人 ID（external_userid）无效"),
                 _("该联系人可能已失效或不属于本企业：请立即同步「客户联系」，再核对客户的企业微信关联。")),
    WecomErrcode(40098, _("「联系我」或入群配置（config_id）无效"),
                 _("请重新生成活码或入群二维码；若在生成活码时出现，请确认接待投顾已在企业微信完成实名认证。")),
    WecomErrcode(TRANSFER_IN_PROGRESS_ERRCODE, _("该客户正在另一次转接中"),
                 _("等上一次转接有结果（企业微信约 24 小时后自动接替）后再发起。")),
    WecomErrcode(TRANSFER_QUOTA_ERRCODE, _("该客户 90 天内的在职转接次数已用完"),
                 _("企业微信规定每位客户 90 个自然日内最多被在职转接 2 次：请到期后再转，或在系统内先由接替投顾跟进。")),
    WecomErrcode(41001, _("缺少 access_token"), _TOKEN),
    WecomErrcode(41051, _("欢迎语的 welcome_code 无效或已过期"),
                 _("欢迎语须在客户添加后 20 秒内发送，过期即无法补发；无需处理。")),
    WecomErrcode(41053, _("该成员尚未完成实名认证"), _("请该投顾在企业微信中完成实名认证后再试。")),
    WecomErrcode(41054, _("该成员尚未激活企业微信"), _("请该投顾登录并激活企业微信后再试。")),
    WecomErrcode(42001, _("access_token 已过期"), _TOKEN),
    WecomErrcode(42009, _("suite_access_token 已过期"), _TOKEN),
    WecomErrcode(45009, _("调用频率超过企业微信限制"), _RETRY),
    WecomErrcode(45011, _("调用过于频繁"), _RETRY),
    WecomErrcode(45033, _("并发调用超过企业微信限制"), _RETRY),
    WecomErrcode(45035, _("每分钟调用次数超过企业微信限制"), _RETRY),
    WecomErrcode(48002, _("应用没有该接口权限"),
                 _("请在企业微信管理后台给应用开通客户联系权限：在「客户联系 → API」中把本系统使用的应用加入「可调用应用」。")),
    WecomErrcode(60011, _("应用没有该成员或客户的权限（不在可见范围）"),
                 _("请在管理后台把该成员加入应用的可见范围，并在「客户联系 → 权限配置」中允许其使用客户联系。")),
    WecomErrcode(60020, _("服务器 IP 不在企业可信 IP 列表中"), _("请在企业微信管理后台为应用配置可信 IP。")),
    WecomErrcode(60111, _("成员 userid 不存在"),
                 _("该投顾的企业微信账号可能已删除或 userid 填错：请检查投顾资料中的企业微信 userid。")),
    WecomErrcode(NOT_A_CONTACT_ERRCODE, _("该成员与此客户不存在好友关系"),
                 _("客户已删除该成员、成员已删除客户，或客户已被转给别人：企业微信中无法转接，只能在系统内转移；"
                   "请立即同步「客户联系」以更新关系。")),
    WecomErrcode(84064, _("企业微信找不到操作对象（全局错误码表：callee 不存在）"),
                 _("请立即同步「客户联系」后重试；仍出现时把这条记录（含企业微信原文）交给技术支持核对。")),
    WecomErrcode(84071, _("外部联系人授权码不合法或已被使用"), _("授权码只能使用一次：请重新发起该操作。")),
    WecomErrcode(84074, _("没有外部联系人权限"),
                 _("请在管理后台「客户联系 → 权限配置」中为该投顾开通客户联系，并确认其在应用可见范围内。")),
    WecomErrcode(84075, _("authcode 不合法或已过期"),
                 _("请重新发起该操作；仍出现时检查该投顾是否已开通客户联系权限。")),
    WecomErrcode(90500, _("客户群不存在或不可操作（已解散，或群主未离职）"),
                 _("请立即同步「客户群」；群已解散时无需处理。")),
    WecomErrcode(701008, _("该成员没有有效的互通账号（接口许可）"),
                 _("请在企业微信管理后台为该成员购买并激活「互通账号」，激活后再试。")),
]}


def wecom_errcode_info(errcode) -> WecomErrcode | None:
    """The table's row for ``errcode`` (an int or its text); an unknown code gets a generic row; None for no code
    (None, "" or 0)."""
    try:
        code = int(errcode)
    except (TypeError, ValueError):
        return None
    if code == 0:
        return None
    return WECOM_ERRCODES.get(code) or WecomErrcode(
        code, _("企业微信返回错误"), _("请把这条记录（含企业微信原文）交给技术支持，或在企业微信开发者中心按错误码查询。"))


def wecom_errcode_text(errcode) -> str:
    """``errcode`` in words with what to do ("84061 该成员与此客户不存在好友关系。客户已删除…"), "" for no code."""
    info = wecom_errcode_info(errcode)
    return str(info) if info else ""
