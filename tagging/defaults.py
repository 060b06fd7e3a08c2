"""The taxonomy and tier scheme every installation starts with (operators edit them in the UI)."""

CATEGORIES = [
    # code, name, kind
    ("basic", "基础属性", "basic"),
    ("behaviour", "行为兴趣", "behaviour"),
    ("opportunity", "商机", "opportunity"),
    ("risk", "风险偏好", "risk"),
    ("service", "服务策略", "service"),
    ("voice", "客户之声", "voice"),
    ("communication", "沟通偏好", "communication"),
]

# code, name, category, exclusive group, default ttl days, description
TAGS = [
    ("high_net_worth", "高净值", "basic", "", None, "总资产 100 万以上"),
    ("young_investor", "年轻投资者", "basic", "", None, "35 岁以下"),
    ("fund_interest", "基金意向", "behaviour", "", 30, "近期频繁浏览基金页且无基金持仓"),
    ("news_reader", "资讯活跃", "behaviour", "", 30, "近 30 天阅读资讯较多"),
    ("margin_intent", "两融意向", "opportunity", "", 60, "有开通融资融券的意向"),
    ("star_intent", "科创板意向", "opportunity", "", 60, "有开通科创板权限的意向"),
    ("options_intent", "期权意向", "opportunity", "", 60, "有开通股票期权的意向"),
    ("idle_funds", "闲置资金", "opportunity", "", 30, "账户有较多闲置资金"),
    ("assets_elsewhere", "他行资产", "opportunity", "", 90, "在其他券商或银行有资产"),
    ("product_expiring", "他处产品将到期", "opportunity", "", 60, "在别处的理财产品即将到期"),
    ("risk_conservative", "偏好稳健", "risk", "risk_pref", None, "偏好低风险产品"),
    ("risk_aggressive", "偏好进取", "risk", "risk_pref", None, "偏好高风险高收益"),
    ("novice", "投资小白", "service", "experience", None, "需要投资者教育"),
    ("experienced", "资深投资者", "service", "experience", None, "交易经验丰富"),
    ("complaint", "投诉", "voice", "", 90, "客户表达不满或投诉"),
    ("feedback", "产品反馈", "voice", "", 90, "对产品或服务提出建议"),
    ("contact_morning", "上午方便联系", "communication", "contact_time", None, "最佳联系时间：上午"),
    ("contact_afternoon", "下午方便联系", "communication", "contact_time", None, "最佳联系时间：下午"),
    ("contact_evening", "晚上方便联系", "communication", "contact_time", None, "最佳联系时间：晚上"),
    ("prefers_wecom", "偏好企业微信", "communication", "contact_channel", None, "偏好通过企业微信沟通"),
    ("prefers_phone", "偏好电话", "communication", "contact_channel", None, "偏好电话沟通"),
]

# code, label, R high, F high, M high, rank, colour, channels, cadence, products, activities, suggested SOP
TIERS = [
    ("important_value", "重要价值", True, True, True, 1, "red", "专属投顾 1 对 1 企业微信、电话", "每周",
     "两融、期权、私募、资产配置", "VIP 沙龙、策略会", "高净值客户关怀"),
    ("important_development", "重要发展", True, False, True, 2, "orange", "企业微信 1 对 1", "每两周",
     "基金定投、理财", "产品路演", "提升交易频次"),
    ("important_maintain", "重要保持", False, True, True, 3, "yellow", "电话回访、企业微信", "每两周",
     "固收+、理财", "专属活动邀约", "沉睡前唤醒"),
    ("important_retain", "重要挽留", False, False, True, 4, "purple", "电话、企业微信", "立即并每周",
     "稳健理财", "专属权益", "重要客户挽留"),
    ("general_value", "一般价值", True, True, False, 5, "green", "社群、企业微信", "每月",
     "ETF、基金", "社群直播", "社群运营"),
    ("general_development", "一般发展", True, False, False, 6, "teal", "社群、App 推送", "每月",
     "基金、资讯", "投教课程", "新手投教"),
    ("general_maintain", "一般保持", False, True, False, 7, "cyan", "App 推送、短信", "每月",
     "资讯", "打卡活动", "活跃度提升"),
    ("general_retain", "一般挽留", False, False, False, 8, "azure", "短信、App 推送", "每季度",
     "资讯", "召回活动", "沉睡唤醒"),
    ("no_trade", "无交易", None, None, None, 9, "secondary", "App 推送、社群", "每月",
     "投教内容", "新手任务", "首笔交易引导"),
]


def defaults_load(get_model) -> None:
    """Create whatever of the defaults is missing (idempotent). ``get_model`` is ``apps.get_model``
    (historical models in the migration, the real ones elsewhere)."""
    TagCategory = get_model("tagging", "TagCategory")  # noqa: N806
    Tag = get_model("tagging", "Tag")  # noqa: N806
    TierScheme = get_model("tagging", "TierScheme")  # noqa: N806
    TierDefinition = get_model("tagging", "TierDefinition")  # noqa: N806
    categories = {}
    for position, (code, name, kind) in enumerate(CATEGORIES):
        categories[code], _ = TagCategory.objects.get_or_create(code=code, defaults={"name": name, "kind": kind,
                                                                                     "position": position})
    for code, name, category, group, ttl, description in TAGS:
        Tag.objects.get_or_create(code=code, defaults={"name": name, "category": categories[category],
                                                       "exclusive_group": group, "default_ttl_days": ttl,
                                                       "description": description})
    scheme = TierScheme.objects.filter(code="rfm8").first()
    if scheme is None:
        scheme = TierScheme.objects.create(code="rfm8", name="RFM 八类", window_days=365, method="mean",
                                           active=not TierScheme.objects.filter(active=True).exists())
    for code, label, r, f, m, rank, colour, channels, cadence, products, activities, sop in TIERS:
        TierDefinition.objects.get_or_create(scheme=scheme, code=code, defaults={
            "label": label, "r_high": r, "f_high": f, "m_high": m, "rank": rank, "colour": colour,
            "channels": channels, "cadence": cadence, "products": products, "activities": activities,
            "suggested_sop": sop})


# rule tags the demo switches on (operators write their own in the rule editor)
DEMO_RULES = {
    "high_net_worth": {"op": "and", "rules": [
        {"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]},
    "young_investor": {"op": "and", "rules": [{"type": "attribute", "field": "age", "op": "lt", "value": 35}]},
    "fund_interest": {"op": "and", "rules": [
        {"type": "events", "event_type": "fund_page_view", "op": "gte", "value": 3, "within_days": 7},
        {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 365, "product_type": "fund"}]},
    "news_reader": {"op": "and", "rules": [
        {"type": "events", "event_type": "news_read", "op": "gte", "value": 5, "within_days": 30}]},
}
