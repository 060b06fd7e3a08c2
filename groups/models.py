"""Community groups (社群): WeCom customer group chats with a purpose, an owner advisor and an
audience defined by a segment; members, joins/leaves and daily health.

A group is scoped like a customer by its owner: ``advisor`` and ``branch`` have the same names as on
Customer, so ``core.scoping.Scope.customer_q()`` applies to groups unchanged.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from customers.models import CustomerQuerySet, ScopedQuerySet


class Purpose(models.TextChoices):
    STOCK_FRIENDS = "stock_friends", _("股友群")
    FUND = "fund", _("基金群")
    VIP = "vip", _("VIP 群")
    NEW_CLIENT = "new_client", _("新客教育群")
    OTHER = "other", _("其他")


class GroupChat(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("正常")
        DISMISSED = "dismissed", _("已解散")

    chat_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(_("群名"), max_length=100)
    purpose = models.CharField(_("用途"), max_length=20, choices=Purpose.choices, default=Purpose.OTHER)
    advisor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("群主"), null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="owned_groups")
    owner_userid = models.CharField(_("群主 userid"), max_length=64)
    branch = models.ForeignKey("core.Branch", verbose_name=_("营业部"), null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+")
    audience = models.ForeignKey("segments.Segment", verbose_name=_("目标客群"), null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="groups")
    notice = models.TextField(_("群公告"), blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    member_count = models.PositiveIntegerField(_("成员数"), default=0)
    join_qr_code = models.URLField(_("入群二维码"), max_length=500, blank=True)
    join_config_id = models.CharField(max_length=64, blank=True)
    wecom_created_at = models.DateTimeField(_("建群时间"), null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    objects = CustomerQuerySet.as_manager()  # scoped by advisor/branch like a customer

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = _("客户群")
        verbose_name_plural = _("客户群")

    def __str__(self):
        return self.name


class GroupMember(models.Model):
    """A current or past member; ``left_at`` is set when they leave (and cleared if they come back)."""

    class Type(models.IntegerChoices):
        STAFF = 1, _("员工")
        EXTERNAL = 2, _("客户")

    group = models.ForeignKey(GroupChat, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(max_length=64)
    type = models.PositiveSmallIntegerField(choices=Type.choices, default=Type.EXTERNAL)
    name = models.CharField(_("名称"), max_length=100, blank=True)
    unionid = models.CharField(max_length=64, blank=True)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="group_memberships")
    join_scene = models.PositiveSmallIntegerField(default=0)
    joined_at = models.DateTimeField(_("入群时间"), null=True, blank=True)
    left_at = models.DateTimeField(_("退群时间"), null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "userid"], name="group_member_unique")]
        indexes = [models.Index(fields=["customer", "group"], name="groupmember_customer")]


class GroupMemberEvent(models.Model):
    """Each join or leave, for joins/leaves per day."""

    class Kind(models.TextChoices):
        JOIN = "join", _("入群")
        LEAVE = "leave", _("退群")

    group = models.ForeignKey(GroupChat, on_delete=models.CASCADE, related_name="member_events")
    userid = models.CharField(max_length=64)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["group", "at"], name="groupevent_group_time")]


class GroupDailyStat(models.Model):
    """A group's health on one day: size, joins, leaves and the tier mix of its client members."""

    group = models.ForeignKey(GroupChat, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    members = models.PositiveIntegerField(default=0)
    clients = models.PositiveIntegerField(default=0)
    joins = models.PositiveIntegerField(default=0)
    leaves = models.PositiveIntegerField(default=0)
    tiers = models.JSONField(default=dict, help_text=_("分层代码 → 客户成员数"))

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["group", "day"], name="group_daily_stat_unique")]


class PurposeTagRule(models.Model):
    """A client who joins a group of ``purpose`` gets ``tag`` (tag source 入群规则); with ``remove_on_leave`` they
    lose it again when they leave, unless still in another group of that purpose (groups.services.
    group_purpose_tags_apply, through tagging's one writer: history, expiry, exclusive groups)."""

    purpose = models.CharField(_("用途"), max_length=20, choices=Purpose.choices)
    tag = models.ForeignKey("tagging.Tag", verbose_name=_("标签"), on_delete=models.CASCADE, related_name="+")
    remove_on_leave = models.BooleanField(_("退群时移除"), default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["purpose", "pk"]
        verbose_name = _("入群自动标签")
        verbose_name_plural = _("入群自动标签")
        constraints = [models.UniqueConstraint(fields=["purpose", "tag"], name="group_purpose_tag_unique")]
