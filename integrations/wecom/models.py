"""What the product keeps of WeCom (企业微信): external contacts and who follows them, corp tags,
contact ways (渠道活码), callbacks as received, sync runs and advisor handovers (离职继承/在职转接).

Group chats live in the groups app; this app is the connection to WeCom itself.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from customers.models import ScopedQuerySet


class ExternalContact(models.Model):
    """A WeCom external contact (a client's WeChat), linked to a customer when we can tell which."""

    class Match(models.TextChoices):
        MATCHED = "matched", _("已关联")
        UNMATCHED = "unmatched", _("待人工关联")
        CREATED = "created", _("新建客户")
        IGNORED = "ignored", _("已忽略")

    external_userid = models.CharField(max_length=64, unique=True)
    name = models.CharField(_("微信昵称"), max_length=100, blank=True)
    type = models.PositiveSmallIntegerField(_("类型"), default=1, help_text=_("1 微信用户，2 企业微信用户"))
    unionid = models.CharField(max_length=64, blank=True, db_index=True)
    gender = models.PositiveSmallIntegerField(default=0)
    corp_name = models.CharField(_("企业"), max_length=100, blank=True)
    customer = models.ForeignKey("customers.Customer", verbose_name=_("客户"), null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="wecom_contacts")
    match_status = models.CharField(_("关联状态"), max_length=10, choices=Match.choices, default=Match.UNMATCHED)
    match_method = models.CharField(_("关联方式"), max_length=20, blank=True,
                                    help_text=_("unionid / mobile / remark / manual / created"))
    deleted_at = models.DateTimeField(_("已删除"), null=True, blank=True)
    # an add_external_contact received while no customer matched ({at, userid, change_type, contact_way});
    # announced (Touch, core.events.WecomContactAdded) when the contact gets its customer, then emptied: once only
    pending_add = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("外部联系人")
        verbose_name_plural = _("外部联系人")
        indexes = [models.Index(fields=["match_status"], name="wecom_contact_match")]

    def __str__(self):
        return self.name or self.external_userid


class ContactFollow(models.Model):
    """One staff member's relation to an external contact (follow_user / follow_info)."""

    contact = models.ForeignKey(ExternalContact, on_delete=models.CASCADE, related_name="follows")
    userid = models.CharField(_("员工 userid"), max_length=64)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("员工"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="wecom_follows")
    remark = models.CharField(_("备注"), max_length=100, blank=True)
    description = models.CharField(_("描述"), max_length=300, blank=True)
    remark_mobiles = models.JSONField(default=list, blank=True)
    add_way = models.PositiveSmallIntegerField(_("添加方式"), default=0)
    state = models.CharField(_("渠道参数"), max_length=30, blank=True)
    wecom_tag_ids = models.JSONField(default=list, blank=True)
    # WeCom's tag ids on this follow when tags were last reconciled: what changed since on either side
    synced_tag_ids = models.JSONField(default=list, blank=True)
    added_at = models.DateTimeField(_("添加时间"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("已删除"), null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "userid"], name="wecom_follow_unique")]


class CorpTag(models.Model):
    """A WeCom corp tag (企业客户标签) as WeCom knows it, linked to our tag when they are the same."""

    wecom_tag_id = models.CharField(max_length=64, unique=True)
    group_id = models.CharField(max_length=64)
    group_name = models.CharField(_("标签组"), max_length=50)
    name = models.CharField(_("名称"), max_length=50)
    order = models.PositiveIntegerField(default=0)
    tag = models.OneToOneField("tagging.Tag", verbose_name=_("本系统标签"), null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="corp_tag")
    deleted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = _("企业微信标签")
        verbose_name_plural = _("企业微信标签")


class ContactWay(models.Model):
    """A contact QR (渠道活码) for a channel/campaign/advisor; its ``state`` attributes who comes in."""

    name = models.CharField(_("名称"), max_length=100)
    channel = models.CharField(_("渠道"), max_length=50)
    campaign = models.CharField(_("活动"), max_length=100, blank=True)
    advisor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("接待投顾"), on_delete=models.PROTECT,
                                related_name="contact_ways")
    branch = models.ForeignKey("core.Branch", verbose_name=_("营业部"), null=True, blank=True,
                               on_delete=models.PROTECT, related_name="+")
    tags = models.ManyToManyField("tagging.Tag", verbose_name=_("自动打标签"), blank=True, related_name="+")
    welcome_message = models.TextField(_("欢迎语"), blank=True)
    state = models.CharField(_("渠道参数 state"), max_length=30, unique=True)
    config_id = models.CharField(max_length=64, blank=True)
    qr_code = models.URLField(_("二维码"), max_length=500, blank=True)
    active = models.BooleanField(_("启用"), default=True)
    added_count = models.PositiveIntegerField(_("添加人数"), default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("渠道活码")
        verbose_name_plural = _("渠道活码")

    def __str__(self):
        return self.name


class CallbackEvent(models.Model):
    """A verified, decrypted callback from WeCom, stored before it is processed (in Celery)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待处理")
        DONE = "done", _("已处理")
        FAILED = "failed", _("失败")
        IGNORED = "ignored", _("已忽略")

    dedupe_key = models.CharField(max_length=64, unique=True, help_text=_("WeCom 重试时内容相同：按内容去重"))
    event = models.CharField(max_length=50)
    change_type = models.CharField(max_length=50, blank=True)
    payload = models.JSONField(default=dict)
    wecom_created_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(_("接收时间"), db_default=Now())
    processed_at = models.DateTimeField(_("处理时间"), null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [models.Index(fields=["status", "received_at"], name="wecom_callback_status")]


class SyncRun(models.Model):
    """One sync with WeCom (staff, contacts, corp tags, group chats), on schedule or on demand."""

    class Kind(models.TextChoices):
        ALL = "all", _("全部")
        CONTACTS = "contacts", _("客户联系")
        TAGS = "tags", _("企业标签")
        GROUPS = "groups", _("客户群")

    class Status(models.TextChoices):
        RUNNING = "running", _("进行中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    kind = models.CharField(_("范围"), max_length=10, choices=Kind.choices, default=Kind.ALL)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    counts = models.JSONField(_("统计"), default=dict)
    token_refreshes = models.PositiveSmallIntegerField(_("令牌刷新次数"), default=0)
    error = models.TextField(_("错误"), blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField(_("开始时间"), db_default=Now())
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]


class Transfer(models.Model):
    """Handing one advisor's clients to another (离职继承 or 在职转接), here and in WeCom."""

    class Kind(models.TextChoices):
        RESIGNED = "resigned", _("离职继承")
        ON_JOB = "on_job", _("在职转接")

    kind = models.CharField(_("类型"), max_length=10, choices=Kind.choices)
    from_advisor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("原投顾"), on_delete=models.PROTECT,
                                     related_name="+")
    to_advisor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("接替投顾"), on_delete=models.PROTECT,
                                   related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(_("发起时间"), db_default=Now())
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("客户转接")
        verbose_name_plural = _("客户转接")


class TransferItem(models.Model):
    """One client's handover, with WeCom's answer (transfer_result: 1 done, 2 waiting, 3 refused …)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("待提交")
        WAITING = "waiting", _("等待接替")
        DONE = "done", _("接替完毕")
        REFUSED = "refused", _("客户拒绝")
        LIMITED = "limited", _("接替人客户数已达上限")
        FAILED = "failed", _("失败")
        LOCAL = "local", _("仅系统内转移")
        SKIPPED = "skipped", _("本次未转（留在原投顾名下）")

    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="items")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    external_userid = models.CharField(max_length=64, blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.PENDING)
    errcode = models.IntegerField(null=True, blank=True)
    errmsg = models.CharField(max_length=300, blank=True)
    # a handover WeCom refused or failed is undone here: the client goes back to the original advisor
    reverted_at = models.DateTimeField(_("已退回原投顾"), null=True, blank=True)
    revert_note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["transfer", "customer"], name="wecom_transfer_item_unique")]
