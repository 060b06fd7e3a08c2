"""SOP journeys (旅程): versioned definitions, enrollments, step runs with idempotency keys,
compliance-approved message templates, the trading calendar and the touch guards' policy.

The engine (sop/engine.py) lives on these tables: a step run is claimed with SKIP LOCKED, executed
at most once per idempotency key, and a blocked touch is a step run with its reason, never a gap.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from customers.models import ScopedQuerySet


class TradingDay(models.Model):
    """One calendar day of the Shanghai exchange (XSHG); a day with no row is UNKNOWN, never assumed."""

    class Source(models.TextChoices):
        LIBRARY = "exchange_calendars", _("exchange-calendars")
        MANUAL = "manual", _("人工维护")
        NOTICE = "notice", _("交易所休市安排")
        DEMO = "demo", _("演示数据生成")

    day = models.DateField(_("日期"), primary_key=True)
    is_open = models.BooleanField(_("交易日"))
    source = models.CharField(_("来源"), max_length=20, choices=Source.choices, default=Source.LIBRARY)
    note = models.CharField(_("说明"), max_length=100, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["day"]
        verbose_name = _("交易日历")
        verbose_name_plural = _("交易日历")


class ForbiddenPhrase(models.Model):
    """A wording compliance maintains for the template lint: a promise a message may never make (``forbidden``),
    or an accepted risk disclosure (``disclosure``), one of which a message that mentions a product must carry."""

    class Kind(models.TextChoices):
        FORBIDDEN = "forbidden", _("禁用表述")
        DISCLOSURE = "disclosure", _("认可的风险提示")

    kind = models.CharField(_("类型"), max_length=10, choices=Kind.choices, default=Kind.FORBIDDEN)
    phrase = models.CharField(_("表述"), max_length=50, unique=True)
    reason = models.CharField(_("原因"), max_length=200, blank=True)
    active = models.BooleanField(_("启用"), default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["phrase"]
        verbose_name = _("禁用表述")
        verbose_name_plural = _("禁用表述")


class Channel(models.TextChoices):
    WECOM = "wecom", _("企业微信 1 对 1")
    WECOM_GROUP = "wecom_group", _("企业微信群")
    SMS = "sms", _("短信")
    APP_PUSH = "app_push", _("App 推送")


class MessageTemplate(models.Model):
    name = models.CharField(_("名称"), max_length=100)
    channel = models.CharField(_("渠道"), max_length=20, choices=Channel.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = _("消息模板")
        verbose_name_plural = _("消息模板")

    def __str__(self):
        return self.name

    def approved_version(self):
        return self.versions.filter(status=TemplateVersion.Status.APPROVED).order_by("-number").first()


class TemplateVersion(models.Model):
    """One version of a template's text; only an APPROVED version may be sent."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("草稿")
        PENDING = "pending", _("待合规审核")
        APPROVED = "approved", _("已批准")
        REJECTED = "rejected", _("已驳回")

    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("版本"))
    body = models.TextField(_("内容"))
    product = models.ForeignKey("customers.Product", verbose_name=_("涉及产品"), null=True, blank=True,
                                on_delete=models.PROTECT, related_name="+")
    lint = models.JSONField(_("检查结果"), default=list, blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(_("审核意见"), max_length=500, blank=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="sop_template_version_unique")]


class GuardPolicy(models.Model):
    """The touch guards' settings (one row): quiet hours and per-customer frequency caps per channel."""

    quiet_start = models.TimeField(_("免打扰开始"), default="21:00")
    quiet_end = models.TimeField(_("免打扰结束"), default="08:00")
    caps = models.JSONField(
        _("频次上限"), default=dict,
        help_text=_('渠道 → {"day": n, "week": n, "month": n}；企业微信群发每自然月最多 4 条是平台上限，始终生效'))
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = _("触达规则")
        verbose_name_plural = _("触达规则")


class Unsubscribe(models.Model):
    """A client who asked not to be contacted on a channel (退订); the guards honour it."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="unsubscribes")
    channel = models.CharField(_("渠道"), max_length=20, choices=Channel.choices)
    at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "channel"], name="sop_unsubscribe_unique")]


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("草稿")
        LIVE = "live", _("运行中")
        PAUSED = "paused", _("已暂停")
        ARCHIVED = "archived", _("已归档")

    name = models.CharField(_("名称"), max_length=100)
    description = models.CharField(_("说明"), max_length=500, blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    draft = models.JSONField(_("编辑中的定义"), default=dict)
    live_version = models.ForeignKey("JourneyVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name = _("SOP 旅程")
        verbose_name_plural = _("SOP 旅程")

    def __str__(self):
        return self.name


class JourneyVersion(models.Model):
    """A published, immutable definition; enrollments finish on the version they entered."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("版本"))
    definition = models.JSONField(_("定义"))
    trigger_type = models.CharField(max_length=30, db_index=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    published_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["journey", "-number"]
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="sop_journey_version_unique")]


class Enrollment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("进行中")
        COMPLETED = "completed", _("已完成")
        HOLDOUT = "holdout", _("对照组")
        EXITED = "exited", _("已退出")

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrollments")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="sop_enrollments")
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    trigger_key = models.CharField(max_length=100, help_text=_("同一触发事件只入旅程一次"))
    variant = models.CharField(_("A/B 分组"), max_length=1, blank=True)
    entered_at = models.DateTimeField(_("进入时间"), db_default=Now())
    finished_at = models.DateTimeField(_("结束时间"), null=True, blank=True)
    goal_met_at = models.DateTimeField(_("达成目标"), null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "customer", "trigger_key"], name="sop_enrollment_trigger_once"),
            models.UniqueConstraint(fields=["journey", "customer"], condition=Q(status="active"),
                                    name="sop_enrollment_one_active"),
        ]
        indexes = [models.Index(fields=["version", "status"], name="sop_enrollment_version")]


class StepRunQuerySet(ScopedQuerySet):
    customer_path = "enrollment__customer__"


class StepRun(models.Model):
    """One step of one enrollment. ``idempotency_key`` = enrollment:version:step, unique: a retried,
    duplicated or redelivered execution finds the row and never touches the client twice."""

    class Status(models.TextChoices):
        DUE = "due", _("待执行")
        CLAIMED = "claimed", _("执行中")
        DONE = "done", _("已完成")
        BLOCKED = "blocked", _("已拦截")
        FAILED = "failed", _("失败待重试")
        DEAD = "dead", _("放弃（死信）")
        CANCELLED = "cancelled", _("已取消")

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="step_runs")
    step_id = models.CharField(_("步骤"), max_length=40)
    step_type = models.CharField(max_length=20)
    idempotency_key = models.CharField(max_length=120, unique=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.DUE)
    due_at = models.DateTimeField(_("计划时间"))
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(_("结果"), max_length=30, blank=True,
                               help_text=_("sent / delivered / replied / task_created / then / else / …"))
    block_reason = models.CharField(_("拦截原因"), max_length=30, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    touch = models.OneToOneField("customers.Touch", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="step_run")
    created_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = StepRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["due_at"], name="sop_steprun_due", condition=Q(status__in=["due", "failed"])),
            models.Index(fields=["claimed_at"], name="sop_steprun_claimed", condition=Q(status="claimed")),
            models.Index(fields=["enrollment", "step_id"], name="sop_steprun_enrollment"),
        ]
