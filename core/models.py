from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    ADVISOR = "advisor", _("投顾/客户经理")
    BRANCH_MANAGER = "branch_manager", _("营业部经理")
    HQ_MANAGER = "hq_manager", _("总部管理")
    OPERATOR = "operator", _("运营")
    COMPLIANCE = "compliance", _("合规")
    ADMIN = "admin", _("系统管理员")


class Branch(models.Model):
    """A brokerage branch office (营业部); every staff member and customer belongs to one."""

    code = models.CharField(_("营业部代码"), max_length=32, unique=True)
    name = models.CharField(_("名称"), max_length=100)
    region = models.CharField(_("地区"), max_length=50, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("营业部")
        verbose_name_plural = _("营业部")

    def __str__(self):
        return _("%(name)s（%(code)s）") % {"name": self.name, "code": self.code}


class User(AbstractUser):
    """A staff member. The role decides what they may use; branch and role decide their data scope."""

    role = models.CharField(_("角色"), max_length=20, choices=Role.choices, default=Role.ADVISOR)
    branch = models.ForeignKey(
        Branch, verbose_name=_("营业部"), on_delete=models.PROTECT, null=True, blank=True, related_name="staff"
    )
    employee_code = models.CharField(_("工号"), max_length=32, unique=True, null=True, blank=True)
    wecom_userid = models.CharField(_("企业微信 userid"), max_length=64, unique=True, null=True, blank=True)
    display_name = models.CharField(_("姓名"), max_length=50, blank=True)
    # set when an admin creates the account or resets its password; core.middleware.PasswordChangeRequiredMiddleware
    # sends the user to the password change page until they choose their own
    must_change_password = models.BooleanField(_("下次登录须修改密码"), default=False)

    class Meta:
        verbose_name = _("员工")
        verbose_name_plural = _("员工")
        constraints = [
            models.CheckConstraint(
                name="user_branch_scoped_roles_need_branch",
                condition=~models.Q(role__in=["advisor", "branch_manager"]) | models.Q(branch__isnull=False),
                violation_error_message=_("投顾和营业部经理必须属于一个营业部"),
            ),
        ]

    def __str__(self):
        return self.display_name or self.username

    @property
    def role_label(self) -> str:
        return Role(self.role).label


class AuditLog(models.Model):
    """Who did what to whose data, from where and why. Written by services inside their transaction."""

    created_at = models.DateTimeField(_("时间"), auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("操作人"), null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_label = models.CharField(_("操作人标识"), max_length=150)
    action = models.CharField(_("动作"), max_length=64, db_index=True)
    target_type = models.CharField(_("对象类型"), max_length=64, blank=True)
    target_id = models.CharField(_("对象"), max_length=128, blank=True, db_index=True)
    reason = models.CharField(_("原因"), max_length=500, blank=True)
    ip_address = models.GenericIPAddressField(_("IP"), null=True, blank=True)
    details = models.JSONField(_("详情"), default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("审计日志")
        verbose_name_plural = _("审计日志")

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_id}"
