"""Saved segments (客群): a rule, its stored membership (kept as add/remove diffs), its size over
time, frozen snapshots, exports and bulk actions.

Membership is firm-wide (the rule applied to every customer); what a viewer sees of it is cut to
their data scope when read, so one rebuild serves every role.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from customers.models import ScopedQuerySet


class Segment(models.Model):
    name = models.CharField(_("名称"), max_length=100)
    description = models.CharField(_("说明"), max_length=500, blank=True)
    rule = models.JSONField(_("规则"))
    branch = models.ForeignKey("core.Branch", verbose_name=_("营业部"), null=True, blank=True,
                               on_delete=models.PROTECT, related_name="+",
                               help_text=_("空表示全公司客群；营业部经理建的客群只属于本营业部"))
    archived = models.BooleanField(_("已归档"), default=False)
    member_count = models.PositiveIntegerField(_("人数"), null=True, blank=True)
    rebuilt_at = models.DateTimeField(_("最近重算"), null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("创建人"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())
    updated_at = models.DateTimeField(_("更新时间"), db_default=Now())

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name = _("客群")
        verbose_name_plural = _("客群")

    def __str__(self):
        return self.name


class SegmentMember(models.Model):
    """Current membership of a saved segment; changed only by diffs (see SegmentMemberChange)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="segment_memberships")
    since = models.DateTimeField(_("加入时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "customer"], name="segment_member_unique")]
        indexes = [models.Index(fields=["customer", "segment"], name="segmember_customer")]


class SegmentMemberChange(models.Model):
    """Who joined or left a segment at a rebuild: the 'entered a segment' trigger reads this."""

    class Action(models.TextChoices):
        JOINED = "joined", _("加入")
        LEFT = "left", _("离开")

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="changes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(_("变化"), max_length=6, choices=Action.choices)
    rebuild = models.ForeignKey("SegmentRebuild", on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(_("时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["segment", "-at"], name="segchange_segment_time")]


class SegmentRebuild(models.Model):
    """One recomputation of a segment's membership, with its timing."""

    class Status(models.TextChoices):
        RUNNING = "running", _("进行中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")
        SKIPPED = "skipped", _("已跳过（另一次重算进行中）")

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="rebuilds")
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    added = models.PositiveIntegerField(_("加入"), default=0)
    removed = models.PositiveIntegerField(_("离开"), default=0)
    size = models.PositiveIntegerField(_("人数"), default=0)
    duration_ms = models.PositiveIntegerField(_("耗时（毫秒）"), null=True, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField(_("开始时间"), db_default=Now())
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]


class SegmentSizeDaily(models.Model):
    """A dynamic segment's size once a day (the trend chart): the firm's (``branch`` null) and each branch's,
    so a branch manager's trend counts only their branch."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="daily_sizes")
    day = models.DateField(_("日期"))
    branch = models.ForeignKey("core.Branch", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    size = models.PositiveIntegerField(_("人数"))

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["segment", "day", "branch"], name="segment_size_daily_unique",
                                               nulls_distinct=False)]


class SegmentSnapshot(models.Model):
    """A frozen member list at a moment (a campaign's audience)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(_("名称"), max_length=100)
    rule = models.JSONField(_("当时的规则"))
    size = models.PositiveIntegerField(_("人数"), default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("创建人"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("冻结时间"), db_default=Now())

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("客群快照")
        verbose_name_plural = _("客群快照")

    def __str__(self):
        return self.name


class SegmentSnapshotMember(models.Model):
    snapshot = models.ForeignKey(SegmentSnapshot, on_delete=models.CASCADE, related_name="members")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["snapshot", "customer"], name="segment_snapshot_member_unique")]


class SegmentExport(models.Model):
    """Members of a segment (or of one snapshot) written to CSV/XLSX by a Celery task."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "Excel (XLSX)"

    class Status(models.TextChoices):
        PENDING = "pending", _("排队中")
        RUNNING = "running", _("进行中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="exports")
    snapshot = models.ForeignKey(SegmentSnapshot, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    format = models.CharField(_("格式"), max_length=4, choices=Format.choices, default=Format.CSV)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(_("总数"), default=0)
    written = models.PositiveIntegerField(_("已写出"), default=0)
    masked = models.BooleanField(_("个人信息已脱敏"), default=True)
    file = models.FileField(_("文件"), upload_to="segment_exports/%Y/%m/", max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("导出人"), on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    @property
    def progress(self) -> int:
        return 100 if self.status == self.Status.DONE else (self.written * 100 // self.total if self.total else 0)


class SegmentAction(models.Model):
    """A bulk action taken on a segment's members (within the actor's scope), and what it did."""

    class Kind(models.TextChoices):
        TAG_ADD = "tag_add", _("打标签")
        TAG_REMOVE = "tag_remove", _("移除标签")
        TASKS = "tasks", _("给投顾派任务")
        SOP_ENROLL = "sop_enroll", _("加入 SOP")
        GROUP_INVITE = "group_invite", _("邀请入群")

    class Status(models.TextChoices):
        PENDING = "pending", _("排队中")
        RUNNING = "running", _("进行中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(_("动作"), max_length=20, choices=Kind.choices)
    params = models.JSONField(_("参数"), default=dict)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.PENDING)
    affected = models.PositiveIntegerField(_("影响客户数"), default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("操作人"), on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(_("时间"), db_default=Now())
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    # what the action page shows instead of the stored keys (a kind registered by another app may add keys:
    # an unknown one is shown as it is stored)
    PARAM_LABELS = {"tag": _("标签"), "title": _("任务标题"), "due_days": _("期限（天）"), "journey_id": _("旅程"),
                    "group_id": _("群")}
    RESULT_LABELS = {"members": _("成员"), "changed": _("有变化"), "created": _("新建任务"), "skipped": _("跳过"),
                     "entered": _("进入旅程"), "requested": _("请求邀请"), "already_member": _("已在群内"),
                     "already_invited": _("已有邀请任务"), "no_advisor": _("无在职投顾"), "out_of_scope": _("不在数据范围")}
    RESULT_HIDDEN = ("affected", "tag_name", "journey", "group_id", "group_name")  # shown elsewhere on the row

    class Meta:
        ordering = ["-created_at", "-pk"]

    def params_display(self) -> list[tuple[str, str]]:
        """The parameters as (label, value): a tag, journey or group by the name the run recorded in its result."""
        result = self.result or {}
        names = {"tag": result.get("tag_name"), "journey_id": result.get("journey"), "group_id": result.get("group_name")}
        return [(str(self.PARAM_LABELS.get(key, key)), str(names.get(key) or value))
                for key, value in (self.params or {}).items()]

    def result_display(self) -> list[tuple[str, object]]:
        """The result as (label, value), in the order of RESULT_LABELS (jsonb does not keep the written order)."""
        result = self.result or {}
        keys = [k for k in self.RESULT_LABELS if k in result] + sorted(
            k for k in result if k not in self.RESULT_LABELS and k not in self.RESULT_HIDDEN)
        return [(str(self.RESULT_LABELS.get(key, key)), result[key]) for key in keys]
