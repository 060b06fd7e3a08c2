from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.models import ScopedQuerySet

# =============================================================================================
# Churn warning (dashboards/churn.py): the latest explainable score per client.
# =============================================================================================


class ChurnScore(models.Model):
    class Level(models.TextChoices):
        LOW = "low", _("低")
        MEDIUM = "medium", _("中")
        HIGH = "high", _("高")

    customer = models.OneToOneField("customers.Customer", primary_key=True, on_delete=models.CASCADE,
                                    related_name="churn_score")
    score = models.PositiveSmallIntegerField(_("流失风险分"))
    level = models.CharField(_("风险等级"), max_length=10, choices=Level.choices)
    # [{"code": "activity_drop", "label": "近30天登录较前90天下降 70%", "points": 30}, …]
    reasons = models.JSONField(_("原因"), default=list)
    computed_at = models.DateTimeField(_("计算时间"))

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("流失预警")
        verbose_name_plural = _("流失预警")
        indexes = [models.Index(fields=["level", "-score"], name="churn_level_score")]
        constraints = [models.CheckConstraint(name="churn_score_0_100", condition=models.Q(score__lte=100))]


# =============================================================================================
# Analyses' summary tables (dashboards/analyses/): added below.
# =============================================================================================


class AnalysisCustomerFact(models.Model):
    """One row per customer: what the analyses need of the customer, its trades and its events, kept by
    dashboards/analyses/refresh.py. ``customer_id`` is deliberately not a foreign key: a deleted customer's
    row is found by the refresh (it has no customer any more) so the cells it counted in are recomputed.

    Months are the first day of the month in Asia/Shanghai. ``*_months`` are bit masks of the calendar
    months after the opening month (bit n = active n months later, n ≤ 62)."""

    customer_id = models.BigIntegerField(primary_key=True)
    branch_id = models.BigIntegerField()
    channel = models.CharField(max_length=50)
    signup_at = models.DateTimeField()  # Customer.created_at: entering the opening funnel
    signup_month = models.DateField()
    stage = models.SmallIntegerField()  # index into customers.models.FUNNEL_ORDER: the furthest step reached
    opened_at = models.DateField(null=True)
    opened_month = models.DateField(null=True)
    is_contact = models.BooleanField()
    assets = models.DecimalField(max_digits=18, decimal_places=2)
    visits_30d = models.IntegerField()  # app logins in the 30 days after sign-up
    news_30d = models.IntegerField()  # behaviours in the 30 days after opening
    views_30d = models.IntegerField()
    logins_30d = models.IntegerField()
    second_trade_90d = models.BooleanField()
    trade_months = models.BigIntegerField()
    login_months = models.BigIntegerField()

    class Meta:
        verbose_name = _("分析客户事实")
        verbose_name_plural = _("分析客户事实")
        indexes = [
            models.Index(fields=["branch_id", "channel", "signup_month"], name="anafact_signup_key"),
            models.Index(fields=["branch_id", "channel", "opened_month"], name="anafact_opened_key"),
        ]


class AcquisitionMonthly(models.Model):
    """Sign-ups of one month, branch and channel, and how far they got: the funnel and the channel pages."""

    month = models.DateField()
    branch_id = models.BigIntegerField()
    channel = models.CharField(max_length=50)
    signups = models.IntegerField()
    password_set = models.IntegerField()  # reached at least this step
    video_verified = models.IntegerField()
    opened = models.IntegerField()
    funded = models.IntegerField()
    contacts = models.IntegerField()  # WeCom contacts added
    visits = models.BigIntegerField()
    assets = models.DecimalField(max_digits=20, decimal_places=2)

    class Meta:
        verbose_name = _("获客月度汇总")
        verbose_name_plural = _("获客月度汇总")
        constraints = [models.UniqueConstraint(fields=["branch_id", "channel", "month"], name="acq_monthly_key")]
        indexes = [models.Index(fields=["month", "branch_id"], name="acq_monthly_month")]


class CohortMonthly(models.Model):
    """Clients who opened in one month (per branch and channel) and how many were active ``month_offset``
    calendar months later. The offset-0 row always exists and carries the cohort size; later offsets only
    when someone was active."""

    opened_month = models.DateField()
    branch_id = models.BigIntegerField()
    channel = models.CharField(max_length=50)
    month_offset = models.SmallIntegerField()
    clients = models.IntegerField()
    traded = models.IntegerField()
    logged_in = models.IntegerField()
    active = models.IntegerField()  # traded or logged in

    class Meta:
        verbose_name = _("留存队列汇总")
        verbose_name_plural = _("留存队列汇总")
        constraints = [models.UniqueConstraint(fields=["branch_id", "channel", "opened_month", "month_offset"],
                                               name="cohort_monthly_key")]
        indexes = [models.Index(fields=["opened_month", "month_offset"], name="cohort_monthly_month")]


class MagicCell(models.Model):
    """Opened clients of one opening month, branch and channel with ``bucket`` times a behaviour in their first
    30 days (10 = ten or more), and how many reached each later outcome."""

    opened_month = models.DateField()
    branch_id = models.BigIntegerField()
    channel = models.CharField(max_length=50)
    behaviour = models.CharField(max_length=10)  # news / views / logins
    bucket = models.SmallIntegerField()
    clients = models.IntegerField()
    second_trade = models.IntegerField()
    funded = models.IntegerField()
    retained = models.IntegerField()

    class Meta:
        verbose_name = _("魔法数字汇总")
        verbose_name_plural = _("魔法数字汇总")
        constraints = [models.UniqueConstraint(fields=["branch_id", "channel", "opened_month", "behaviour", "bucket"],
                                               name="magic_cell_key")]
        indexes = [models.Index(fields=["behaviour", "opened_month"], name="magic_cell_behaviour")]


class AnalysisRefresh(models.Model):
    """One run of the analyses' refresh; the last finished one holds the trade/event watermarks."""

    class Mode(models.TextChoices):
        FULL = "full", _("全量重建")
        INCREMENTAL = "incremental", _("增量")

    mode = models.CharField(max_length=12, choices=Mode.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    last_trade_id = models.BigIntegerField(default=0)
    last_event_id = models.BigIntegerField(default=0)
    customers_changed = models.IntegerField(default=0)
    cells_rewritten = models.IntegerField(default=0)
    duration_ms = models.IntegerField(default=0)

    class Meta:
        verbose_name = _("分析数据刷新")
        verbose_name_plural = _("分析数据刷新")
        indexes = [models.Index(fields=["-finished_at"], name="analysis_refresh_finished")]
