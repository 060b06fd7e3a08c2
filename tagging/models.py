"""Tags with their evidence and history, and RFM value tiers with their runs and history."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from customers.models import ScopedQuerySet


class TagCategory(models.Model):
    class Kind(models.TextChoices):
        BASIC = "basic", _("基础属性")
        BEHAVIOUR = "behaviour", _("行为兴趣")
        OPPORTUNITY = "opportunity", _("商机")
        RISK = "risk", _("风险偏好")
        SERVICE = "service", _("服务策略")
        VOICE = "voice", _("客户之声")
        COMMUNICATION = "communication", _("沟通偏好")

    code = models.SlugField(_("代码"), max_length=50, unique=True)
    name = models.CharField(_("名称"), max_length=50)
    kind = models.CharField(_("类型"), max_length=20, choices=Kind.choices)
    position = models.PositiveSmallIntegerField(_("排序"), default=0)

    class Meta:
        ordering = ["position", "code"]
        verbose_name = _("标签分类")
        verbose_name_plural = _("标签分类")

    def __str__(self):
        return self.name


class Tag(models.Model):
    """A tag operators define. Tags sharing ``exclusive_group`` are mutually exclusive on a customer."""

    code = models.SlugField(_("代码"), max_length=50, unique=True)
    name = models.CharField(_("名称"), max_length=50)
    category = models.ForeignKey(TagCategory, verbose_name=_("分类"), on_delete=models.PROTECT, related_name="tags")
    description = models.CharField(_("说明"), max_length=300, blank=True)
    exclusive_group = models.SlugField(_("互斥组"), max_length=50, blank=True)
    default_ttl_days = models.PositiveIntegerField(_("默认有效天数"), null=True, blank=True)
    sync_to_wecom = models.BooleanField(_("同步到企业微信"), default=False)
    wecom_tag_id = models.CharField(_("企业微信标签 ID"), max_length=64, blank=True)
    active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["category__position", "code"]
        verbose_name = _("标签")
        verbose_name_plural = _("标签")

    def __str__(self):
        return self.name

    def expiry_from(self, now):
        """When a tag set at ``now`` expires by default (None: it does not)."""
        from datetime import timedelta

        return now + timedelta(days=self.default_ttl_days) if self.default_ttl_days else None

    @property
    def is_opportunity(self) -> bool:
        return self.category.kind == TagCategory.Kind.OPPORTUNITY


class TagSource(models.TextChoices):
    MANUAL = "manual", _("手动")
    RULE = "rule", _("规则")
    CONVERSATION = "conversation", _("会话识别")
    API = "api", _("接口")
    WECOM = "wecom", _("企业微信")
    GROUP = "group", _("入群规则")  # groups.PurposeTagRule: tags for joining a group of a purpose


class CustomerTagQuerySet(ScopedQuerySet):
    def current(self):
        """Tags that count now: not expired."""
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=Now()))


class CustomerTag(models.Model):
    """The latest truth: one row per customer and tag, with who/what set it, why, and until when."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="customer_tags")
    source = models.CharField(_("来源"), max_length=20, choices=TagSource.choices)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    set_by_label = models.CharField(_("设置者"), max_length=150)
    evidence = models.TextField(_("依据"), blank=True)
    evidence_data = models.JSONField(_("依据数据"), default=dict, blank=True)
    created_at = models.DateTimeField(_("打标时间"), db_default=Now())
    expires_at = models.DateTimeField(_("过期时间"), null=True, blank=True)

    objects = CustomerTagQuerySet.as_manager()

    class Meta:
        verbose_name = _("客户标签")
        verbose_name_plural = _("客户标签")
        constraints = [models.UniqueConstraint(fields=["customer", "tag"], name="customer_tag_unique")]
        indexes = [
            models.Index(fields=["tag", "customer"], name="custtag_tag_customer"),
            models.Index(fields=["expires_at"], name="custtag_expires", condition=models.Q(expires_at__isnull=False)),
        ]


class CustomerTagHistory(models.Model):
    class Action(models.TextChoices):
        ADDED = "added", _("添加")
        UPDATED = "updated", _("更新")
        REMOVED = "removed", _("移除")
        EXPIRED = "expired", _("过期")

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="tag_history")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(_("动作"), max_length=10, choices=Action.choices)
    source = models.CharField(_("来源"), max_length=20, choices=TagSource.choices)
    actor_label = models.CharField(_("操作者"), max_length=150)
    evidence = models.TextField(_("依据"), blank=True)
    at = models.DateTimeField(_("时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("标签历史")
        verbose_name_plural = _("标签历史")
        indexes = [models.Index(fields=["customer", "-at"], name="taghist_customer_time"),
                   models.Index(fields=["tag", "-at"], name="taghist_tag_time")]


class TagRule(models.Model):
    """A rule tag: a segment-style rule tree evaluated in SQL; matching customers get the tag."""

    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, related_name="rule")
    rule = models.JSONField(_("规则"))
    enabled = models.BooleanField(_("启用"), default=False)
    remove_when_unmatched = models.BooleanField(_("不再满足时移除"), default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_matched = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = _("规则标签")
        verbose_name_plural = _("规则标签")


class ConversationRule(models.Model):
    """Operator-maintained keyword rule for conversation tags (jieba-segmented text)."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="conversation_rules")
    keywords = models.JSONField(_("关键词"), default=list, help_text=_("任一命中即可，如 [\"两融\", \"融资融券\"]"))
    required_any = models.JSONField(_("需同时出现"), default=list, blank=True,
                                    help_text=_("可选：还需出现其中之一，如 [\"开通\", \"想\", \"了解\"]"))
    enabled = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("会话识别规则")
        verbose_name_plural = _("会话识别规则")


class TagSuggestion(models.Model):
    """A tag found in a note, chat message or call transcript, waiting for the advisor's decision."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待确认")
        CONFIRMED = "confirmed", _("已确认")
        REJECTED = "rejected", _("已拒绝")

    class SourceType(models.TextChoices):
        NOTE = "note", _("跟进记录")
        WECOM_MESSAGE = "wecom_message", _("企业微信消息")
        CALL = "call", _("通话转写")

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="tag_suggestions")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="suggestions")
    source_type = models.CharField(max_length=20, choices=SourceType.choices)
    source_id = models.CharField(max_length=64)
    snippet = models.TextField(_("原文片段"))
    detail = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("标签建议")
        verbose_name_plural = _("标签建议")
        constraints = [models.UniqueConstraint(fields=["customer", "tag", "source_type", "source_id"],
                                               name="tag_suggestion_once_per_source")]
        indexes = [models.Index(fields=["customer", "status"], name="tagsugg_customer_status")]


# --- value tiers (RFM) ------------------------------------------------------------------

class TierScheme(models.Model):
    """How tiers are computed: window, thresholds, and the tier definitions below."""

    class Method(models.TextChoices):
        MEAN = "mean", _("平均值")
        MEDIAN = "median", _("中位数")
        FIXED = "fixed", _("固定值")

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(_("名称"), max_length=50)
    window_days = models.PositiveIntegerField(_("窗口天数"), default=365)
    method = models.CharField(_("阈值方法"), max_length=10, choices=Method.choices, default=Method.MEAN)
    fixed_r = models.DecimalField(_("R 阈值（天）"), max_digits=10, decimal_places=2, null=True, blank=True)
    fixed_f = models.DecimalField(_("F 阈值（笔）"), max_digits=10, decimal_places=2, null=True, blank=True)
    fixed_m = models.DecimalField(_("M 阈值（元）"), max_digits=18, decimal_places=2, null=True, blank=True)
    active = models.BooleanField(_("当前方案"), default=True)

    class Meta:
        verbose_name = _("分层方案")
        verbose_name_plural = _("分层方案")
        constraints = [models.UniqueConstraint(fields=["active"], condition=models.Q(active=True),
                                               name="one_active_tier_scheme")]

    def __str__(self):
        return self.name


class TierDefinition(models.Model):
    """One tier of a scheme: which R/F/M highs map to it, its colour, and its service strategy."""

    scheme = models.ForeignKey(TierScheme, on_delete=models.CASCADE, related_name="tiers")
    code = models.SlugField(max_length=40)
    label = models.CharField(_("名称"), max_length=30)
    r_high = models.BooleanField(null=True, help_text=_("空表示无交易"))
    f_high = models.BooleanField(null=True)
    m_high = models.BooleanField(null=True)
    rank = models.PositiveSmallIntegerField(_("价值排序"), default=0, help_text=_("越小价值越高，用于判断分层下降"))
    colour = models.CharField(_("颜色"), max_length=20, default="blue")
    channels = models.CharField(_("服务渠道"), max_length=200, blank=True)
    cadence = models.CharField(_("服务频率"), max_length=200, blank=True)
    products = models.CharField(_("适配产品"), max_length=300, blank=True)
    activities = models.CharField(_("适配活动"), max_length=300, blank=True)
    suggested_sop = models.CharField(_("建议 SOP"), max_length=200, blank=True)

    class Meta:
        ordering = ["scheme", "rank"]
        verbose_name = _("分层定义")
        verbose_name_plural = _("分层定义")
        constraints = [models.UniqueConstraint(fields=["scheme", "code"], name="tier_code_unique_in_scheme")]

    def __str__(self):
        return self.label


class TierRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", _("计算中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    scheme = models.ForeignKey(TierScheme, on_delete=models.PROTECT, related_name="runs")
    as_of = models.DateField(_("基准日"))
    window_days = models.PositiveIntegerField()
    method = models.CharField(max_length=10)
    threshold_r = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    threshold_f = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    threshold_m = models.DecimalField(max_digits=20, decimal_places=2, null=True)
    counts = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    changed = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("分层计算")
        verbose_name_plural = _("分层计算")


class CustomerTier(models.Model):
    """Each customer's current tier with its R/F/M values."""

    customer = models.OneToOneField("customers.Customer", on_delete=models.CASCADE, related_name="tier",
                                    primary_key=True)
    code = models.SlugField(max_length=40, db_index=True)
    r = models.IntegerField(null=True)
    f = models.IntegerField(default=0)
    m = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    run = models.ForeignKey(TierRun, on_delete=models.SET_NULL, null=True, related_name="+")
    as_of = models.DateField()
    changed_at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("客户分层")
        verbose_name_plural = _("客户分层")


class CustomerTierHistory(models.Model):
    """Every tier change is one row: the event SOPs and webhooks react to."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="tier_history")
    run = models.ForeignKey(TierRun, on_delete=models.CASCADE, related_name="changes")
    from_code = models.SlugField(max_length=40, blank=True)
    to_code = models.SlugField(max_length=40)
    at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("分层变更")
        verbose_name_plural = _("分层变更")
        indexes = [models.Index(fields=["customer", "-at"], name="tierhist_customer_time"),
                   models.Index(fields=["run", "to_code"], name="tierhist_run_code")]
