"""The three demo SOP journeys, seeded with two weeks of history so `make run` shows results at once.

``sop_demo_seed()`` (Celery ``sop.demo_seed``, queued by ``manage.py demo_wecom`` after the WeCom sync and the
groups demo) creates, idempotently (found by name, nothing new on a second run):

* eight message templates written by the demo operator and approved by the demo compliance user;
* 「新客企微欢迎 + 7 天新手培育」 (trigger: WeCom contact added; goal: first trade within 14 days),
  「开户中断召回」 (trigger: opening stalled at 上传身份证 for 24 h; goal: account opened within 7 days) and
  「沉睡重要挽留客户唤醒」 (trigger: tier changed to 重要挽留, current members of the segment 沉睡重要挽留客户
  enrolled; A/B wording, 10 % hold-out; goal: first trade within 30 days), all published;
* a replay of the last ``REPLAY_DAYS`` days: the matching demo clients enter at their (backdated) entry
  times and the real engine runs the steps on a simulated clock every ``TICK`` (sop/demo_world.py plays
  the clients' side: replies, account openings, trades — planted, like the rest of the demo data); then
  ``goals_measure``. From then on the live triggers and beat take over.

SMS and push of the replay go to an in-process copy of the provider sandbox and no WeCom message template
is created for them: they are history, never sent to a configured gateway. Live touches afterwards go
through MESSAGING_BASE_URL (the sandbox process in `make run`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

REPLAY_DAYS = 14
DEMO_CALENDAR_AHEAD_DAYS = 60
TICK = timedelta(minutes=30)
LOCK_KEY = 0x736F7064656D6F  # "sopdemo"

WELCOME = "新客企微欢迎 + 7 天新手培育"
RECALL = "开户中断召回"
WAKE = "沉睡重要挽留客户唤醒"
WAKE_SEGMENT = "沉睡重要挽留客户"
REPLIED_TAG = "prefers_wecom"
WAKE_PRODUCT = "SY0091"  # 收益凭证·稳盈91天 (R2) in customers.demo_data.PRODUCTS

# key: (name, channel, body, product code)
TEMPLATES = {
    "welcome": ("新客欢迎（企业微信）", "wecom",
                "{name}您好，我是您在{branch}的专属投顾{advisor}，欢迎您！开户后的交易规则、App 使用、资讯解读等问题，"
                "都可以在企业微信直接问我。接下来 7 天我会陆续给您发几节新手投教小课，帮您快速上手。", None),
    "edu1": ("新手投教 · 第 1 天", "app_push",
             "新手第 1 课｜{name}您好：A 股交易时间为交易日 9:30–11:30、13:00–15:00，股票实行 T+1 交收。"
             "打开 App「投教」栏目，3 分钟看懂账户与下单流程。", None),
    "edu3": ("新手投教 · 第 3 天", "app_push",
             "新手第 3 课｜{name}您好：买基金、股票前请先完成风险测评，选择与自己风险承受能力相匹配的产品；"
             "看不懂的名词，可以在企业微信问您的投顾{advisor}。投资有风险，入市需谨慎。", None),
    "edu7": ("新手投教 · 第 7 天", "app_push",
             "新手第 7 课｜{name}您好：分散配置、控制仓位、不追涨杀跌，是新手最重要的三件事。"
             "App「投教」栏目有完整课程，欢迎随时学习。投资有风险，入市需谨慎。", None),
    "recall": ("开户中断提醒（短信）", "sms",
               "{name}您好，您的开户申请还差几步即可完成。打开 App 即可从中断处继续，全程约 5 分钟；"
               "如需协助，可在 App 内联系在线客服。回T退订", None),
    "care": ("重要客户关怀（企业微信）", "wecom",
             "{name}您好，我是您的投顾{advisor}。好久没和您交流了，近期市场变化较大，想约您做一次账户检视，"
             "一起看看目前的配置是否还适合您。您这周哪天方便？", None),
    "wake_a": ("重要客户唤醒 · A 账户检视", "sms",
               "{name}您好，作为我们的重要客户，您可预约投顾{advisor}为您做一次免费的账户检视与资产配置建议，"
               "回复 1 即可预约。回T退订", None),
    "wake_b": ("重要客户唤醒 · B 稳健产品", "sms",
               "{name}您好，{product}（{product_code}，风险等级 {product_risk}）近期开放认购，适合偏好稳健、"
               "能承受相应风险的投资者，详情请咨询您的投顾{advisor}。理财非存款，产品有风险，投资需谨慎；"
               "过往业绩不代表未来表现。回T退订", WAKE_PRODUCT),
}

WAKE_RULE = {"op": "or", "rules": [
    {"type": "tier", "op": "in", "value": ["important_retain"]},
    {"op": "and", "rules": [
        {"type": "attribute", "field": "total_assets", "op": "gte", "value": 200000},
        {"type": "trades", "measure": "count", "op": "eq", "value": 0, "within_days": 180},
        {"type": "trades", "measure": "count", "op": "gte", "value": 1, "within_days": 1095}]}]}


def _definitions(t: dict[str, int]) -> dict[str, tuple[str, dict]]:
    """name → (description, definition) with the template ids ``t``."""
    opened = {"op": "and", "rules": [{"type": "attribute", "field": "funnel_stage", "op": "in",
                                      "value": ["opened", "funded"]}]}
    return {
        WELCOME: ("客户添加投顾企业微信后：投顾发欢迎语，第 1、3、7 天推送新手投教；7 天内回复过的打上「偏好企业微信」，"
                  "没回复的生成电话回访任务。目标：14 天内完成首笔交易。", {
            "trigger": {"type": "wecom_contact_added"}, "start": "welcome",
            "steps": [
                {"id": "welcome", "type": "wecom_message", "template": t["welcome"], "executor": "advisor",
                 "next": "wait_d1"},
                {"id": "wait_d1", "type": "wait", "minutes": 1440, "next": "edu_d1"},
                {"id": "edu_d1", "type": "app_push", "template": t["edu1"], "next": "wait_d3"},
                {"id": "wait_d3", "type": "wait", "minutes": 2880, "next": "edu_d3"},
                {"id": "edu_d3", "type": "app_push", "template": t["edu3"], "next": "wait_d7"},
                {"id": "wait_d7", "type": "wait", "minutes": 5760, "next": "edu_d7"},
                {"id": "edu_d7", "type": "app_push", "template": t["edu7"], "next": "replied"},
                {"id": "replied", "type": "branch", "condition": {"kind": "replied", "within_hours": 144},
                 "then": "tag_wecom", "else": "call"},
                {"id": "tag_wecom", "type": "tag_add", "tag": REPLIED_TAG},
                {"id": "call", "type": "task", "title": "新客 7 天未回复企业微信：电话回访，了解开户后的使用情况",
                 "due_hours": 24, "executor": "advisor"}],
            "goal": {"type": "first_trade", "within_days": 14}}),
        RECALL: ("开户停在「上传身份证」超过 24 小时：发提醒短信，2 天后仍未开户的生成投顾电话协助任务。"
                 "目标：7 天内完成开户。", {
            "trigger": {"type": "funnel_stalled", "stage": "id_uploaded", "hours": 24}, "start": "sms",
            "steps": [
                {"id": "sms", "type": "sms", "template": t["recall"], "next": "wait_2d"},
                {"id": "wait_2d", "type": "wait", "minutes": 2880, "next": "reached"},
                {"id": "reached", "type": "branch", "condition": {"kind": "rule", "rule": opened},
                 "then": None, "else": "call"},
                {"id": "call", "type": "task", "title": "开户中断：电话协助客户完成开户", "due_hours": 24,
                 "executor": "advisor"}],
            "goal": {"type": "account_opened", "within_days": 7}}),
        WAKE: ("重要挽留客户（含半年未交易的高资产客户）：投顾电话问候并发企业微信关怀，下一个交易日 9:30 起 A/B 两种"
               "短信文案各发一半；10% 对照组不触达。目标：30 天内完成交易。", {
            "trigger": {"type": "tier_changed", "to": ["important_retain"]}, "start": "call",
            "steps": [
                {"id": "call", "type": "task", "title": "重要挽留客户唤醒：电话问候，了解近况并预约账户检视",
                 "due_hours": 48, "executor": "advisor", "next": "care"},
                {"id": "care", "type": "wecom_message", "template": t["care"], "executor": "advisor",
                 "next": "wait_td"},
                {"id": "wait_td", "type": "wait", "next_trading_day": True, "at": "09:30", "next": "ab"},
                {"id": "ab", "type": "branch", "condition": {"kind": "ab", "percent_a": 50},
                 "then": "sms_a", "else": "sms_b"},
                {"id": "sms_a", "type": "sms", "template": t["wake_a"]},
                {"id": "sms_b", "type": "sms", "template": t["wake_b"]}],
            "goal": {"type": "first_trade", "within_days": 30}, "holdout_percent": 10}),
    }


# --- seeding ------------------------------------------------------------------------------------

def _demo_staff():
    from core.models import Role, User

    def pick(username, role):
        return (User.objects.filter(username=username, role=role, is_active=True).first()
                or User.objects.filter(role=role, is_active=True).order_by("pk").first())

    return pick("operator", Role.OPERATOR), pick("compliance", Role.COMPLIANCE)


def _templates(operator, compliance) -> dict[str, int]:
    from customers.models import Product
    from sop.models import MessageTemplate
    from sop.templates_lint import template_review, template_save

    ids = {}
    for key, (name, channel, body, product_code) in TEMPLATES.items():
        existing = MessageTemplate.objects.filter(name=name, channel=channel).order_by("pk").first()
        if existing is not None and existing.approved_version() is not None:
            ids[key] = existing.pk
            continue
        product = Product.objects.filter(code=product_code).first() if product_code else None
        if product_code and product is None:  # not the demo product list: the service wording instead
            body = TEMPLATES["wake_a"][2]
        version = template_save(actor=operator, template=existing, name=name, channel=channel, body=body,
                                product=product)
        template_review(actor=compliance, version=version, approve=True, note="演示模板：已核对风险提示与禁用表述")
        ids[key] = version.template_id
    return ids


def _wake_segment(operator):
    from segments.models import Segment
    from segments.services import segment_rebuild

    segment, created = Segment.objects.get_or_create(
        name=WAKE_SEGMENT, branch=None,
        defaults={"rule": WAKE_RULE, "created_by": operator,
                  "description": "重要挽留分层，以及总资产 20 万以上、半年未交易、三年内交易过的客户（SOP 演示）"})
    if created or segment.rebuilt_at is None:
        segment_rebuild(segment_id=segment.pk, requested_by="sop_demo")
    return segment


@contextmanager
def _history_providers():
    """The replay's SMS/push go to an in-process provider sandbox; WeCom templates are not created."""
    from django.test.utils import override_settings

    from sop.provider_sandbox import DEFAULT_TOKEN, sandbox_serve

    sandbox, server = sandbox_serve(port=0, token=DEFAULT_TOKEN)
    try:
        with override_settings(MESSAGING_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}",
                               MESSAGING_API_TOKEN=DEFAULT_TOKEN, WECOM_CORP_ID="", WECOM_SECRET=""):
            yield sandbox
    finally:
        server.shutdown()
        server.server_close()


def sop_demo_seed(*, now: datetime | None = None, days: int = REPLAY_DAYS) -> dict:
    """Create and replay the demo journeys that do not exist yet (by name); see the module docstring."""
    from customers.models import Customer
    from sop.calendar import calendar_demo_extend
    from sop.demo_world import Replay
    from sop.goals import goals_measure
    from sop.models import Journey
    from sop.services import journey_create, journey_publish

    now = now or timezone.now()
    operator, compliance = _demo_staff()
    if operator is None or compliance is None or not Customer.objects.exists():
        return {"skipped": "需要演示数据：运营、合规账号和客户（manage.py demo_load）"}
    with transaction.atomic():
        with connection.cursor() as cursor:  # two seeds at once: the second waits, then finds the journeys
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        existing = set(Journey.objects.filter(name__in=[WELCOME, RECALL, WAKE]).values_list("name", flat=True))
        if existing == {WELCOME, RECALL, WAKE}:
            return {"created": 0}
        templates = _templates(operator, compliance)
        journeys = {}
        for name, (description, definition) in _definitions(templates).items():
            if name in existing:
                continue
            journey = journey_create(actor=operator, name=name, description=description, definition=definition)
            journey_publish(actor=operator, journey=journey)
            journey.refresh_from_db()
            journeys[name] = journey
        segment = _wake_segment(operator) if WAKE in journeys else None
        # the replay waits for trading days: where the real calendar is not known yet (past the library's data,
        # before the operators import a notice), the demo lends itself weekdays, marked as the demo's
        calendar_demo_extend(first=timezone.localdate(now) - timedelta(days=days + 1),
                             last=timezone.localdate(now) + timedelta(days=DEMO_CALENDAR_AHEAD_DAYS))
        with _history_providers() as sandbox:
            replay = Replay(journeys=journeys, start=now - timedelta(days=days), now=now, segment=segment)
            replay.run()
        replay.advisors_follow_up()
        goals = goals_measure(now=now)
        result = {"created": len(journeys), "journeys": replay.summary(), "goals_met": goals,
                  "history_messages": sandbox.state()["accepted"]}
    logger.info("SOP demo seeded: %s", result)
    return result


def local_at(day, hhmm: str) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))
