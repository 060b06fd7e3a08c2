"""What audit rows mean in words: a label for every action the product records (core.services.audit_record) and
for the detail keys it writes, in both languages. The audit log page and its export show these, never the codes
or a Python dict; ``tests/test_audit_labels.py`` fails when code records an action that has no label here."""

from django.utils.translation import gettext_lazy as _

ACTIONS = {
    "advisors.export": _("导出投顾跟进表"),
    "api_client.create": _("创建 API 密钥"),
    "api_client.deactivate": _("停用 API 密钥"),
    "audit.export": _("导出审计日志"),
    "auth.lockout": _("登录失败次数过多，账号锁定"),
    "churn.backtest_queued": _("提交流失预警回测"),
    "churn.export": _("导出流失预警名单"),
    "churn.scores_queued": _("提交流失评分计算"),
    "churn.sop_enroll": _("将流失预警客户加入旅程"),
    "churn.tasks_create": _("生成流失预警回访任务"),
    "conversation_rule.create": _("新建对话打标规则"),
    "conversation_rule.disable": _("停用对话打标规则"),
    "conversation_rule.enable": _("启用对话打标规则"),
    "crm.sync": _("CRM 同步"),
    "crypto.rotate": _("轮换个人信息加密密钥"),
    "custom_field.activate": _("启用自定义字段"),
    "custom_field.create": _("新建自定义字段"),
    "custom_field.deactivate": _("停用自定义字段"),
    "custom_field.update": _("修改自定义字段"),
    "customer.bulk_upsert": _("批量写入客户"),
    "customer.custom_fields_set": _("修改客户自定义字段"),
    "customer.import": _("导入客户文件"),
    "customer.import_dry_run": _("校验客户导入文件"),
    "customer.import_report_download": _("下载导入错误报告"),
    "customer.pii_search": _("按手机号或证件号搜索客户"),
    "customer.pii_search_limited": _("个人信息搜索超出频率限制"),
    "customer.reveal": _("查看客户个人信息"),
    "customer_tag.add": _("通过 API 打标签"),
    "customer_tag.remove": _("通过 API 移除标签"),
    "event.bulk_ingest": _("批量写入行为事件"),
    "group.invite_tasks": _("生成入群邀请任务"),
    "group.join_way_create": _("创建入群方式"),
    "group.purpose_tag_rule_add": _("新增入群自动标签"),
    "group.purpose_tag_rule_change": _("修改入群自动标签"),
    "group.purpose_tag_rule_delete": _("删除入群自动标签"),
    "group.update": _("修改社群"),
    "product.bulk_upsert": _("批量写入产品"),
    "segment.action": _("客群批量操作"),
    "segment.archive": _("归档客群"),
    "segment.create": _("新建客群"),
    "segment.export": _("导出客群成员"),
    "segment.export_download": _("下载客群导出文件"),
    "segment.rebuild": _("重算客群"),
    "segment.snapshot": _("冻结客群快照"),
    "segment.update": _("修改客群"),
    "sop.blocked_export": _("导出拦截记录"),
    "sop.calendar_imported": _("导入交易所休市安排"),
    "sop.calendar_seeded": _("重新导入交易日历"),
    "sop.calendar_set": _("设置交易日"),
    "sop.guard_policy_saved": _("保存触达规则"),
    "sop.journey_archived": _("归档旅程"),
    "sop.journey_created": _("新建旅程"),
    "sop.journey_live": _("恢复旅程"),
    "sop.journey_paused": _("暂停旅程"),
    "sop.journey_published": _("发布旅程"),
    "sop.phrase_activated": _("启用合规表述"),
    "sop.phrase_added": _("添加合规表述"),
    "sop.phrase_deactivated": _("停用合规表述"),
    "sop.step_run_retried": _("重试死信步骤"),
    "sop.template_approved": _("批准消息模板"),
    "sop.template_rejected": _("驳回消息模板"),
    "sop.template_saved": _("保存消息模板"),
    "sop.template_submitted": _("提交消息模板审核"),
    "sop.wecom_marked_sent": _("标记企业微信消息已发送"),
    "sop.wecom_skipped": _("跳过企业微信消息"),
    "sop_rollup.export": _("导出 SOP 效果汇总"),
    "staff.activate": _("启用员工账号"),
    "staff.create": _("新建员工账号"),
    "staff.deactivate": _("停用员工账号"),
    "staff.password_change": _("员工修改密码"),
    "staff.password_reset": _("重置员工密码"),
    "staff.unlock": _("解锁员工账号"),
    "staff.update": _("修改员工账号"),
    "tag.bulk_add": _("批量打标签"),
    "task.complete": _("完成任务"),
    "tag.bulk_remove": _("批量移除标签"),
    "tag_rule.save": _("保存规则打标"),
    "tag_suggestion.confirm": _("确认对话标签建议"),
    "tag_suggestion.reject": _("拒绝对话标签建议"),
    "tier.run_start": _("开始分层计算"),
    "tier.strategy_update": _("修改分层服务策略"),
    "trade.bulk_ingest": _("批量写入交易"),
    "webhook.redeliver": _("重新投递 Webhook"),
    "webhook.resume": _("恢复 Webhook 投递"),
    "webhook.subscription_create": _("新建 Webhook 订阅"),
    "webhook.subscription_delete": _("删除 Webhook 订阅"),
    "wecom.contact_create_customer": _("为企业微信联系人新建客户"),
    "wecom.contact_ignore": _("忽略企业微信联系人"),
    "wecom.contact_link": _("关联企业微信联系人与客户"),
    "wecom.contact_way_create": _("新建渠道活码"),
    "wecom.contact_way_deactivate": _("停用渠道活码"),
    "wecom.transfer_revert": _("撤回客户转接"),
    "wecom.transfer_start": _("发起客户转接"),
}

DETAIL_KEYS = {
    "created": _("新建"), "updated": _("更新"), "unchanged": _("未变"), "invalid": _("无效"), "errors": _("错误"),
    "changed": _("变化"), "customers": _("客户数"), "count": _("数量"), "rows": _("行数"), "members": _("成员"),
    "tag": _("标签"), "tags": _("标签"), "reason": _("原因"), "field": _("字段"), "matches": _("匹配"),
    "name": _("名称"), "scopes": _("权限"), "branch": _("营业部"), "status": _("状态"), "pages": _("页数"),
    "journey": _("旅程"), "step": _("步骤"), "version": _("版本"), "number": _("版本号"), "template": _("模板"),
    "format": _("格式"), "filters": _("筛选条件"), "year": _("年份"), "open_days": _("交易日"),
    "holidays": _("休市日"), "manual_replaced": _("替换的人工设置"), "is_open": _("交易日"), "note": _("说明"),
    "phrase": _("表述"), "kind": _("类型"), "segment": _("客群"), "snapshot": _("快照"), "subscription": _("订阅"),
    "event": _("事件"), "error": _("错误"), "enabled": _("启用"), "affected": _("影响"), "skipped": _("跳过"),
    "already": _("已有"), "no_advisor": _("无投顾"), "requested": _("请求数"), "already_member": _("已在群内"),
    "already_invited": _("已邀请"), "out_of_scope": _("范围外"), "customer_ids": _("客户"), "dry_run": _("试运行"),
    "file": _("文件"), "total": _("合计"), "counts": _("计数"), "term": _("搜索词"), "term_hmac": _("搜索词指纹"),
    "purpose": _("群用途"), "remove_on_leave": _("退群时移除"), "plan": _("转接预估"), "checked_live": _("已向企业微信核对"),
    "type": _("类型"), "label": _("名称"), "required": _("必填"), "options": _("选项"), "fields": _("字段"),
    "removed_options": _("删除的选项"), "values_not_fitting": _("不符合的已有值"), "customers_with_value": _("有值的客户"),
    "user_id": _("员工 ID"), "role": _("角色"), "employee_code": _("工号"), "display_name": _("姓名"),
    "password_mode": _("密码方式"), "attempts_cleared": _("清除的失败次数"), "was_locked": _("曾被锁定"),
    "locked_since": _("锁定时间"), "ip_addresses": _("IP 地址"), "after_reset": _("重置后首次修改"),
    "failures": _("失败次数"), "limit": _("上限"), "window_seconds": _("时间窗（秒）"), "term_hash": _("搜索词指纹"),
    "term_masked": _("搜索词（已脱敏）"),
    "outcome": _("结果"), "assignee": _("负责人"),
}


def audit_action_label(action: str) -> str:
    """The action in words; an action recorded before it got a label shows as its code."""
    return str(ACTIONS.get(action, action))


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, dict):
        return "，".join(f"{DETAIL_KEYS.get(k, k)} {_value_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "、".join(_value_text(v) for v in value[:20]) + ("…" if len(value) > 20 else "")
    return "" if value is None else str(value)


def audit_details_text(details) -> list[tuple[str, str]]:
    """An audit row's details as (label, value) pairs in words, in the order they were written."""
    if not isinstance(details, dict):
        return [("", _value_text(details))] if details else []
    return [(str(DETAIL_KEYS.get(key, key)), _value_text(value)) for key, value in details.items()]
