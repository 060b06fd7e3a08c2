"""Integration with the broker's systems: API clients, signed webhooks (transactional outbox), CRM pull sync."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class ApiScope(models.TextChoices):
    CUSTOMERS_READ = "customers:read", _("读取客户")
    CUSTOMERS_WRITE = "customers:write", _("写入客户")
    TRADES_WRITE = "trades:write", _("写入交易")
    EVENTS_WRITE = "events:write", _("写入行为事件")
    PRODUCTS_READ = "products:read", _("读取产品")
    PRODUCTS_WRITE = "products:write", _("写入产品")
    TAGS_READ = "tags:read", _("读取标签")
    TAGS_WRITE = "tags:write", _("写入标签")
    TIERS_READ = "tiers:read", _("读取分层")
    SEGMENTS_READ = "segments:read", _("读取客群")
    WEBHOOKS_MANAGE = "webhooks:manage", _("管理 Webhook")


# scopes that write data every branch shares (products feed suitability for all clients): firm-wide keys only
FIRM_WIDE_SCOPES = frozenset({ApiScope.PRODUCTS_WRITE})


class ApiClient(models.Model):
    """A system calling /api/v1 with ``Authorization: Bearer <key>``. Only a hash of the key is stored;
    ``key_prefix`` (the key's first characters) finds the row without scanning."""

    name = models.CharField(_("名称"), max_length=100, unique=True)
    key_prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    branch = models.ForeignKey("core.Branch", verbose_name=_("营业部（空=全部）"), null=True, blank=True,
                               on_delete=models.PROTECT, related_name="api_clients")
    scopes = models.JSONField(_("权限"), default=list)
    rate_limit_per_minute = models.PositiveIntegerField(_("每分钟请求上限"), default=600)
    active = models.BooleanField(_("启用"), default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API 客户端")
        verbose_name_plural = _("API 客户端")

    def __str__(self):
        return self.name

    def effective_scopes(self) -> list[str]:
        """What the key may do: a branch key never holds a firm-wide write, whatever was stored."""
        scopes = self.scopes or []
        return [s for s in scopes if s not in FIRM_WIDE_SCOPES] if self.branch_id else list(scopes)

    # DRF treats request.user as authenticated when this is True; data scope asks core.scoping.
    is_authenticated = True

    @property
    def is_active(self) -> bool:
        return self.active


class WebhookSubscription(models.Model):
    name = models.CharField(_("名称"), max_length=100)
    url = models.URLField(_("回调地址"), max_length=500)
    event_types = models.JSONField(_("事件类型"), default=list)
    secret_encrypted = models.TextField(help_text=_("签名密钥（加密存储）"))
    api_client = models.ForeignKey(ApiClient, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="webhooks", help_text=_("经 API 创建时的客户端；其营业部范围同样适用"))
    active = models.BooleanField(_("启用"), default=True)
    created_at = models.DateTimeField(db_default=Now())
    # the circuit breaker (integrations/webhooks.py): consecutive failed attempts, and while they exceed the
    # threshold, when deliveries to this receiver are tried again
    consecutive_failures = models.PositiveIntegerField(default=0)
    paused_until = models.DateTimeField(_("暂停至"), null=True, blank=True)

    class Meta:
        verbose_name = _("Webhook 订阅")
        verbose_name_plural = _("Webhook 订阅")

    def __str__(self):
        return self.name


class WebhookEvent(models.Model):
    """The outbox: written in the same transaction as the change it reports."""

    event_type = models.CharField(max_length=50, db_index=True)
    payload = models.JSONField()
    branch = models.ForeignKey("core.Branch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(db_default=Now(), db_index=True)

    class Meta:
        verbose_name = _("Webhook 事件")
        verbose_name_plural = _("Webhook 事件")


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("待发送")
        SUCCEEDED = "succeeded", _("成功")
        RETRYING = "retrying", _("重试中")
        DEAD = "dead", _("已放弃")

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # how long the last answer's body was; the body itself is never stored or shown (core/outbound.py)
    last_response_bytes = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = _("Webhook 投递")
        verbose_name_plural = _("Webhook 投递")
        constraints = [models.UniqueConstraint(fields=["subscription", "event"], name="webhook_delivery_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]


class CrmSyncState(models.Model):
    """Where the pull sync of one resource stands: the watermark of the last complete pass and,
    mid-pass, the page cursor to resume from after a failure."""

    resource = models.CharField(max_length=20, unique=True)
    watermark = models.DateTimeField(null=True, blank=True)
    pass_started_watermark = models.DateTimeField(null=True, blank=True)
    cursor = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(db_default=Now())


class CrmSyncRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", _("同步中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text=_("每种资源的 created/updated/unchanged"))
    errors = models.JSONField(default=list)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("CRM 同步记录")
        verbose_name_plural = _("CRM 同步记录")
