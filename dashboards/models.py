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
