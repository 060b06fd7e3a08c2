from datetime import date

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.scoping import scope_for


class ScopedQuerySet(models.QuerySet):
    """``visible_to(principal)`` restricts to the customers the principal may see (core.scoping)."""

    customer_path = "customer__"

    def visible_to(self, principal):
        return self.filter(scope_for(principal).customer_q(self.customer_path))


class CustomerQuerySet(ScopedQuerySet):
    customer_path = ""


class Gender(models.TextChoices):
    MALE = "M", _("男")
    FEMALE = "F", _("女")
    UNKNOWN = "U", _("未知")


class FunnelStage(models.TextChoices):
    ID_UPLOADED = "id_uploaded", _("上传身份证")
    PASSWORD_SET = "password_set", _("设置密码")
    VIDEO_VERIFIED = "video_verified", _("视频见证")
    OPENED = "opened", _("开户完成")
    FUNDED = "funded", _("已入金")


FUNNEL_ORDER = [s.value for s in FunnelStage]


class RiskLevel(models.TextChoices):
    C1 = "C1", _("C1 保守型")
    C2 = "C2", _("C2 稳健型")
    C3 = "C3", _("C3 平衡型")
    C4 = "C4", _("C4 积极型")
    C5 = "C5", _("C5 激进型")


class ProductRisk(models.TextChoices):
    R1 = "R1", _("R1 低风险")
    R2 = "R2", _("R2 中低风险")
    R3 = "R3", _("R3 中风险")
    R4 = "R4", _("R4 中高风险")
    R5 = "R5", _("R5 高风险")


class LifecycleStage(models.TextChoices):
    ACQUIRE = "acquire", _("获客")
    ACTIVATE = "activate", _("激活")
    RETAIN = "retain", _("留存")
    REVENUE = "revenue", _("变现")
    REFER = "refer", _("推荐")


class Customer(models.Model):
    """A brokerage client. Mobile and ID number are stored encrypted, with a keyed hash for exact
    search and a masked copy for display, so lists never touch plaintext."""

    external_id = models.CharField(_("客户号"), max_length=64, unique=True)
    name = models.CharField(_("姓名"), max_length=50)
    gender = models.CharField(_("性别"), max_length=1, choices=Gender.choices, default=Gender.UNKNOWN)
    birth_date = models.DateField(_("出生日期"), null=True, blank=True)
    region = models.CharField(_("地区"), max_length=50, blank=True)
    occupation = models.CharField(_("职业"), max_length=50, blank=True)
    branch = models.ForeignKey("core.Branch", verbose_name=_("营业部"), on_delete=models.PROTECT,
                               related_name="customers")
    advisor = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("投顾"), on_delete=models.SET_NULL,
                                null=True, blank=True, related_name="customers")
    opened_at = models.DateField(_("开户日期"), null=True, blank=True)
    channel = models.CharField(_("开户渠道"), max_length=50, blank=True)
    utm_source = models.CharField(max_length=100, blank=True)
    utm_medium = models.CharField(max_length=100, blank=True)
    utm_campaign = models.CharField(max_length=100, blank=True)
    funnel_stage = models.CharField(_("开户进度"), max_length=20, choices=FunnelStage.choices,
                                    default=FunnelStage.ID_UPLOADED)
    risk_level = models.CharField(_("风险等级"), max_length=2, choices=RiskLevel.choices, blank=True)
    risk_assessed_at = models.DateField(_("风测日期"), null=True, blank=True)
    total_assets = models.DecimalField(_("总资产"), max_digits=18, decimal_places=2, default=0)
    lifecycle_stage = models.CharField(_("生命周期"), max_length=10, choices=LifecycleStage.choices,
                                       default=LifecycleStage.ACQUIRE)
    wecom_external_userid = models.CharField(_("企业微信外部联系人"), max_length=64, unique=True, null=True,
                                             blank=True)
    mobile_encrypted = models.TextField(blank=True, default="")
    mobile_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    mobile_masked = models.CharField(_("手机号"), max_length=16, blank=True, default="")
    id_number_encrypted = models.TextField(blank=True, default="")
    id_number_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    id_number_masked = models.CharField(_("身份证号"), max_length=24, blank=True, default="")
    last_contact_at = models.DateTimeField(_("最近联系"), null=True, blank=True)
    # values of the admin-defined fields (CustomFieldDefinition), {code: value}, validated by customers/custom_fields.py;
    # a database default too, because the set-based writers (ingest, demo COPY) insert without naming it
    custom_fields = models.JSONField(_("自定义字段"), default=dict, blank=True,
                                     db_default=Value({}, output_field=models.JSONField()))
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())
    updated_at = models.DateTimeField(_("更新时间"), db_default=Now())

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("客户")
        verbose_name_plural = _("客户")
        indexes = [
            # keyset pages of "my clients" in each scope, newest assets first or by last contact
            models.Index(fields=["advisor", "-total_assets", "id"], name="cust_advisor_assets"),
            models.Index(fields=["branch", "-total_assets", "id"], name="cust_branch_assets"),
            models.Index(fields=["-total_assets", "id"], name="cust_assets"),
            models.Index(fields=["advisor", "last_contact_at", "id"], name="cust_advisor_contact"),
            models.Index(fields=["branch", "last_contact_at", "id"], name="cust_branch_contact"),
            models.Index(fields=["last_contact_at", "id"], name="cust_contact"),
            # name prefix search: LIKE 'x%' needs pattern ops under a non-C collation
            models.Index(fields=["name"], name="cust_name_prefix", opclasses=["varchar_pattern_ops"]),
            # "newest account first" sorts on the same expression the list orders by
            models.Index(Coalesce("opened_at", Value(date(1970, 1, 1))).desc(), F("id"), name="cust_opened"),
            models.Index(fields=["updated_at", "id"], name="cust_updated"),
            # segment counts (segments/rules.py) on the attributes rules filter most, answered from the index
            # alone (id included, so tag/tier IN-lookups need no heap visit): bench/segments.py
            models.Index(fields=["risk_level", "total_assets", "id"], name="cust_risk_assets"),
            models.Index(fields=["lifecycle_stage", "id"], name="cust_lifecycle"),
            # age conditions of segment rules (compiled to a birth_date range): index-only, joined to a tier / tag set
            models.Index(fields=["birth_date", "id"], name="cust_birth"),
            # custom field conditions (list filter, segment rules): equality and choices as containment (@>), "has a
            # value" as ?; jsonb_ops rather than jsonb_path_ops because the latter cannot answer ?
            GinIndex(fields=["custom_fields"], name="cust_custom_fields"),
        ]
        constraints = [
            models.CheckConstraint(name="customer_risk_level_valid",
                                   condition=models.Q(risk_level__in=["", "C1", "C2", "C3", "C4", "C5"])),
            models.CheckConstraint(name="customer_gender_valid", condition=models.Q(gender__in=["M", "F", "U"])),
            models.CheckConstraint(name="customer_funnel_stage_valid", condition=models.Q(funnel_stage__in=FUNNEL_ORDER)),
            models.CheckConstraint(name="customer_lifecycle_valid",
                                   condition=models.Q(lifecycle_stage__in=[s.value for s in LifecycleStage])),
            models.CheckConstraint(name="customer_assets_not_negative", condition=models.Q(total_assets__gte=0)),
        ]

    def __str__(self):
        return _("%(name)s（%(code)s）") % {"name": self.name, "code": self.external_id}

    @property
    def age_band(self) -> str | None:
        """What roles without personal data see instead of the birth date (API and pages)."""
        return age_band(self.birth_date)

    @property
    def age_band_label(self) -> str:
        return age_band_label(self.age_band)


AGE_BANDS = ["<20", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+"]


def age_band(birth_date: date | None, today: date | None = None) -> str | None:
    """The decade of life on ``today`` (Shanghai date by default): ``"30-39"``; the open ends ``"<20"`` and
    ``"80+"`` keep the rare very young and very old from standing out; None when the birth date is unknown."""
    if birth_date is None:
        return None
    today = today or timezone.localdate()
    age = today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))
    if age < 20:
        return AGE_BANDS[0]
    if age >= 80:
        return AGE_BANDS[-1]
    return f"{age // 10 * 10}-{age // 10 * 10 + 9}"


def age_band_label(band: str | None) -> str:
    """``"30-39"`` → "30–39 岁" (the page's wording)."""
    if not band:
        return ""
    if band == "<20":
        return str(_("20 岁以下"))
    if band == "80+":
        return str(_("80 岁及以上"))
    low, high = band.split("-")
    return str(_("%(low)s–%(high)s 岁") % {"low": low, "high": high})


EVENT_TYPE_LABELS = {
    "app_login": _("登录 App"), "news_read": _("阅读资讯"), "product_view": _("浏览产品"),
    "fund_page_view": _("浏览基金页"),
}

PRODUCT_TYPE_LABELS = {
    "stock": _("股票"), "fund": _("基金"), "bond": _("债券"), "wealth": _("理财"), "margin": _("两融"),
    "option": _("期权"), "star": _("科创板"),
}


class Product(models.Model):
    code = models.CharField(_("产品代码"), max_length=32, unique=True)
    name = models.CharField(_("产品名称"), max_length=100)
    type = models.CharField(_("类型"), max_length=30)
    risk_level = models.CharField(_("风险等级"), max_length=2, choices=ProductRisk.choices)

    class Meta:
        ordering = ["code"]
        verbose_name = _("产品")
        verbose_name_plural = _("产品")
        constraints = [
            models.CheckConstraint(name="product_risk_level_valid",
                                   condition=models.Q(risk_level__in=["R1", "R2", "R3", "R4", "R5"])),
        ]

    def __str__(self):
        return _("%(name)s（%(code)s）") % {"name": self.name, "code": self.code}


class Trade(models.Model):
    class Side(models.TextChoices):
        BUY = "buy", _("买入")
        SELL = "sell", _("卖出")

    external_id = models.CharField(max_length=64, unique=True)
    # no index of its own: trade_customer_time_cover (customer, traded_at) leads with it
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="trades", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="trades")
    traded_at = models.DateTimeField(_("成交时间"))
    side = models.CharField(_("方向"), max_length=4, choices=Side.choices)
    amount = models.DecimalField(_("金额"), max_digits=18, decimal_places=2)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("交易")
        verbose_name_plural = _("交易")
        indexes = [
            # per-customer trade windows (360° view, NOT EXISTS probes of segment rules): index-only with the
            # product (type) and amount carried along
            models.Index(fields=["customer", "traded_at"], include=["product", "amount"], name="trade_customer_time_cover"),
            models.Index(fields=["traded_at"], name="trade_time"),
            # trade windows of segment rules / rule tags: product type → products, then the window, index-only
            # (count by customer, sum of amount); rules without a product type use a skip scan over the products
            models.Index(fields=["product", "traded_at", "customer"], include=["amount"], name="trade_product_time_cust"),
        ]
        constraints = [
            models.CheckConstraint(name="trade_side_valid", condition=models.Q(side__in=["buy", "sell"])),
            models.CheckConstraint(name="trade_amount_positive", condition=models.Q(amount__gt=0)),
        ]


class BehaviourEvent(models.Model):
    """App/web behaviour. Built for hundreds of millions of rows: (customer, time) B-tree for the
    360° timeline and per-customer windows, BRIN on time for range scans; see README for partitioning."""

    event_id = models.CharField(max_length=64, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    type = models.CharField(_("类型"), max_length=40)
    occurred_at = models.DateTimeField(_("发生时间"))
    properties = models.JSONField(_("属性"), default=dict, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("行为事件")
        verbose_name_plural = _("行为事件")
        indexes = [
            models.Index(fields=["customer", "type", "occurred_at"], name="event_customer_type_time"),
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time"),
            # segment event windows count per customer over a time range of one type, from the index alone
            models.Index(fields=["type", "occurred_at", "customer"], name="event_type_time_customer"),
            BrinIndex(fields=["occurred_at"], name="event_time_brin", autosummarize=True),
        ]


class Touch(models.Model):
    """Every contact with a client, in either direction, by any channel.

    Two kinds of touch are not what they look like, by ``source`` (one definition for guards, replies, results
    and the dashboard):
    * ``BOOKKEEPING_SOURCES``: WeCom telling us a client added or deleted an advisor. Inbound ones are not a
      client's reply; outbound ones are not a message.
    * ``NOT_OUTREACH_SOURCES``: outbound touches that do not count toward frequency caps or WeCom's monthly
      group-send limit: the 渠道活码 welcome answers the client who just added the advisor (WeCom sends it with the
      add's welcome code, outside the group-send quota), and bookkeeping is no message at all.
    """

    BOOKKEEPING_SOURCES = ("wecom_add", "wecom_deleted")
    NOT_OUTREACH_SOURCES = ("wecom_welcome", "wecom_deleted")
    SOURCE_LABELS = {"manual": _("手动记录"), "sop": _("SOP 旅程"), "wecom_welcome": _("渠道活码欢迎语"),
                     "wecom_add": _("企业微信添加"), "wecom_deleted": _("企业微信删除"), "wecom_chat": _("企业微信聊天"),
                     "demo": _("演示数据"), "import": _("导入")}

    class Channel(models.TextChoices):
        WECOM = "wecom", _("企业微信")
        WECOM_GROUP = "wecom_group", _("企业微信群")
        PHONE = "phone", _("电话")
        SMS = "sms", _("短信")
        APP_PUSH = "app_push", _("App 推送")
        VISIT = "visit", _("面谈")
        EMAIL = "email", _("邮件")

    class Direction(models.TextChoices):
        OUT = "out", _("发出")
        IN = "in", _("收到")

    class Status(models.TextChoices):
        QUEUED = "queued", _("待发送")
        SENT = "sent", _("已发送")
        DELIVERED = "delivered", _("已送达")
        REPLIED = "replied", _("已回复")
        BLOCKED = "blocked", _("已拦截")
        FAILED = "failed", _("失败")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="touches")
    channel = models.CharField(_("渠道"), max_length=20, choices=Channel.choices)
    direction = models.CharField(_("方向"), max_length=3, choices=Direction.choices, default=Direction.OUT)
    content = models.TextField(_("内容"), blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.SENT)
    staff = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("执行人"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="touches")
    source = models.CharField(_("来源"), max_length=50, blank=True, default="manual")
    occurred_at = models.DateTimeField(_("时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("触达")
        verbose_name_plural = _("触达")
        indexes = [models.Index(fields=["customer", "-occurred_at"], name="touch_customer_time")]

    @property
    def source_label(self) -> str:
        """The source in words ("sop:<journey id>" is an SOP journey's touch)."""
        return str(self.SOURCE_LABELS.get(self.source.split(":", 1)[0], self.source))


class Note(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notes")
    body = models.TextField(_("跟进记录"))
    created_at = models.DateTimeField(_("时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("跟进记录")
        verbose_name_plural = _("跟进记录")
        indexes = [models.Index(fields=["customer", "-created_at"], name="note_customer_time")]
        constraints = [models.CheckConstraint(name="note_body_not_blank", condition=~models.Q(body=""))]


class Task(models.Model):
    class Source(models.TextChoices):
        MANUAL = "manual", _("手动")
        SOP = "sop", _("SOP 旅程")
        SOP_WECOM = "sop_wecom", _("SOP 企业微信消息")
        SEGMENT = "segment", _("客群批量任务")
        CHURN = "churn", _("流失预警")
        GROUP_INVITE = "group_invite", _("社群邀请")
        RULE = "rule", _("规则提醒")

    class Status(models.TextChoices):
        OPEN = "open", _("待办")
        DONE = "done", _("已完成")
        CANCELLED = "cancelled", _("已取消")

    class Outcome(models.TextChoices):
        REACHED = "reached", _("已联系上")
        NOT_REACHED = "not_reached", _("未联系上")
        INTERESTED = "interested", _("有意向")
        NOT_INTERESTED = "not_interested", _("无意向")
        CONVERTED = "converted", _("已成交")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tasks")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("负责人"), on_delete=models.PROTECT,
                                 related_name="tasks")
    title = models.CharField(_("任务"), max_length=200)
    due_at = models.DateTimeField(_("截止时间"))
    source = models.CharField(_("来源"), max_length=50, choices=Source.choices, default=Source.MANUAL)
    source_label = models.CharField(_("来源说明"), max_length=200, blank=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.OPEN)
    outcome = models.CharField(_("结果"), max_length=20, choices=Outcome.choices, blank=True)
    outcome_note = models.TextField(_("结果说明"), blank=True)
    completed_at = models.DateTimeField(_("完成时间"), null=True, blank=True)
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("任务")
        verbose_name_plural = _("任务")
        indexes = [
            models.Index(fields=["assignee", "status", "due_at"], name="task_inbox"),
            models.Index(fields=["customer", "status"], name="task_customer"),
        ]
        constraints = [
            models.CheckConstraint(name="task_done_has_outcome",
                                   condition=~models.Q(status="done") | ~models.Q(outcome="")),
        ]

    @property
    def is_overdue(self) -> bool:
        from django.utils import timezone

        return self.status == self.Status.OPEN and self.due_at < timezone.now()


# =============================================================================================
# Customer import jobs (customers/imports.py). Added after the models above; nothing above
# depends on them.
# =============================================================================================

class ImportJob(models.Model):
    """One run of a customer file import (CSV/XLSX), dry or real; the page polls its counters."""

    class Status(models.TextChoices):
        PENDING = "pending", _("排队中")
        RUNNING = "running", _("进行中")
        DONE = "done", _("已完成")
        FAILED = "failed", _("失败")

    file = models.FileField(_("文件"), upload_to="imports/%Y/%m/", max_length=255)
    original_name = models.CharField(_("文件名"), max_length=255)
    dry_run = models.BooleanField(_("仅校验"), default=True)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.PENDING)
    source_job = models.OneToOneField("self", verbose_name=_("来源校验任务"), null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="confirmed_by")
    total_rows = models.PositiveIntegerField(_("总行数"), default=0)
    processed_rows = models.PositiveIntegerField(_("已处理行数"), default=0)
    created_count = models.PositiveIntegerField(_("新建"), default=0)
    updated_count = models.PositiveIntegerField(_("更新"), default=0)
    unchanged_count = models.PositiveIntegerField(_("未变化"), default=0)
    error_count = models.PositiveIntegerField(_("错误行数"), default=0)
    error_report = models.FileField(_("错误报告"), upload_to="imports/reports/", max_length=255, blank=True)
    message = models.CharField(_("说明"), max_length=500, blank=True)
    runner = models.CharField(max_length=32, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("发起人"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="import_jobs")
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())
    started_at = models.DateTimeField(_("开始时间"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # set by every claim before the file is opened: a delivery that finds the last attempt dead without progress,
    # or the attempts used up, fails the job instead of running the same file again (customers/imports.py)
    attempts = models.PositiveSmallIntegerField(_("处理次数"), default=0)
    attempt_rows = models.PositiveIntegerField(default=0)  # processed_rows when the current attempt started
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("客户导入")
        verbose_name_plural = _("客户导入")
        indexes = [models.Index(fields=["created_by", "-created_at"], name="importjob_user_time")]
        constraints = [
            models.CheckConstraint(name="importjob_status_valid",
                                   condition=models.Q(status__in=["pending", "running", "done", "failed"])),
        ]

    def __str__(self):
        return _("%(name)s（%(code)s）") % {"name": self.original_name, "code": self.get_status_display()}

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(99, self.processed_rows * 100 // self.total_rows)


class ImportJobError(models.Model):
    """One rejected value of an import; personal data is stored masked only."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="errors")
    row_number = models.PositiveIntegerField(_("行号"))
    external_id = models.CharField(_("客户号"), max_length=64, blank=True)
    column = models.CharField(_("列"), max_length=100, blank=True)
    value = models.CharField(_("值"), max_length=200, blank=True)
    reason = models.CharField(_("原因"), max_length=300)

    class Meta:
        verbose_name = _("导入错误")
        verbose_name_plural = _("导入错误")
        indexes = [models.Index(fields=["job", "row_number", "id"], name="importerror_job_row")]


# =============================================================================================
# Custom fields (customers/custom_fields.py). Defined by admins; the values live in Customer.custom_fields.
# =============================================================================================

class CustomFieldType(models.TextChoices):
    TEXT = "text", _("文本")
    NUMBER = "number", _("数字")
    DATE = "date", _("日期")
    CHOICE = "choice", _("单选")
    MULTI_CHOICE = "multi_choice", _("多选")


CUSTOM_FIELD_CODE_RE = r"^[a-z][a-z0-9_]{0,39}$"


class CustomFieldDefinition(models.Model):
    """One admin-defined field on customers. ``code`` (the key in Customer.custom_fields, the API and the rule
    language) and ``type`` never change once created, so no stored value is ever reinterpreted; deactivating
    hides the field and keeps its values; an option taken out of ``options`` stays readable on the customers
    who hold it, flagged (customers/custom_fields.py)."""

    code = models.CharField(_("代码"), max_length=40, unique=True,
                            help_text=_("小写字母开头，只含小写字母、数字和下划线；创建后不能修改"))
    label = models.CharField(_("名称"), max_length=50)
    type = models.CharField(_("类型"), max_length=12, choices=CustomFieldType.choices)
    options = models.JSONField(_("选项"), default=list, blank=True)
    required = models.BooleanField(_("必填"), default=False)
    min_value = models.DecimalField(_("最小值"), max_digits=20, decimal_places=6, null=True, blank=True)
    max_value = models.DecimalField(_("最大值"), max_digits=20, decimal_places=6, null=True, blank=True)
    max_length = models.PositiveIntegerField(_("最大长度"), null=True, blank=True)
    active = models.BooleanField(_("启用"), default=True)
    order = models.PositiveIntegerField(_("排序"), default=0)
    created_at = models.DateTimeField(_("创建时间"), db_default=Now())
    updated_at = models.DateTimeField(_("更新时间"), db_default=Now())

    class Meta:
        ordering = ["order", "id"]
        verbose_name = _("自定义字段")
        verbose_name_plural = _("自定义字段")
        constraints = [
            models.CheckConstraint(name="customfield_type_valid",
                                   condition=models.Q(type__in=[t.value for t in CustomFieldType])),
            models.CheckConstraint(name="customfield_code_format", condition=models.Q(code__regex=CUSTOM_FIELD_CODE_RE)),
            models.CheckConstraint(name="customfield_min_not_above_max",
                                   condition=models.Q(min_value__isnull=True) | models.Q(max_value__isnull=True)
                                   | models.Q(min_value__lte=F("max_value"))),
        ]

    def __str__(self):
        return _("%(name)s（%(code)s）") % {"name": self.label, "code": self.code}

    @property
    def min_text(self) -> str:
        return "" if self.min_value is None else format(self.min_value.normalize(), "f")

    @property
    def max_text(self) -> str:
        return "" if self.max_value is None else format(self.max_value.normalize(), "f")
