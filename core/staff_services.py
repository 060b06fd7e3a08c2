"""用户与权限: admins create staff accounts, change their role, branch, employee code and name, deactivate and
re-activate them, reset their passwords and lift login lockouts.

What these functions guarantee:
- a rejected input stores nothing: every rule is checked before the first write, and a rejection is one
  ``ApplicationError`` whose ``details`` name each offending field with its reason;
- every change writes its audit row (``staff.*``, target the username) in the same transaction; no password,
  generated or typed, ever reaches the audit log or the log files;
- an admin cannot deactivate themselves, change their own role or reset their own password here, and the last
  active admin cannot be deactivated or given another role;
- an advisor who still holds clients keeps role and branch until the clients are handed over (离职继承 /
  在职转接 in integrations/wecom/transfers.py), so clients never end up with an advisor outside their scope;
- a password set here (generated or typed) must be changed at the next login (``User.must_change_password``,
  enforced by core.middleware.PasswordChangeRequiredMiddleware).
Role and branch are written through ``core.services.staff_upsert``, the one writer of a staff member's role,
which also keeps Django admin access in step with the admin role.
"""

from __future__ import annotations

import enum
import secrets

from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from core.access import may
from core.errors import ApplicationError
from core.models import Branch, Role, User
from core.services import audit_record, staff_upsert
from core.staff_selectors import staff_holdings, staff_lockouts

BRANCH_ROLES = {Role.ADVISOR, Role.BRANCH_MANAGER}
USERNAME_MAX_LENGTH = 64  # fits the audit log's target column with room to spare
# no 0/O, 1/l/I: read aloud or typed from a note without guessing
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PASSWORD_GROUPS, PASSWORD_GROUP_LENGTH = 3, 4


class StaffError(enum.StrEnum):
    INVALID = "staff_invalid"
    NOT_ALLOWED = "staff_not_allowed"
    SELF = "staff_self"
    LAST_ADMIN = "staff_last_admin"
    HOLDS_CLIENTS = "staff_holds_clients"
    ALREADY = "staff_already"


class PasswordMode(enum.StrEnum):
    GENERATED = "generated"
    SET_BY_ADMIN = "set_by_admin"


def _require_admin(actor) -> None:
    if not (getattr(actor, "is_authenticated", False) and actor.is_active and may(actor, "users")):
        raise ApplicationError(StaffError.NOT_ALLOWED, _("只有系统管理员可以管理用户"), status_code=403)


def _invalid(details: list[dict]):
    return ApplicationError(StaffError.INVALID, details[0]["message"], details)


def one_time_password_generate(*, user: User) -> str:
    """A one-time password such as ``Kp7m-Xq3r-Tz9w`` that passes the configured password validators for ``user``."""
    while True:
        password = "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _i in range(PASSWORD_GROUP_LENGTH))
                            for _g in range(PASSWORD_GROUPS))
        try:
            password_validation.validate_password(password, user)
        except ValidationError:
            continue
        return password


def _password_errors(password: str, user: User) -> list[dict]:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        return [{"field": "password", "message": " ".join(exc.messages), "code": "password_invalid"}]
    return []


def _fields_check(*, user: User | None, username: str, display_name: str, role: str, branch_code: str | None,
                  employee_code: str | None) -> tuple[list[dict], Branch | None]:
    """Every field's problem at once (field, message, code) and the branch the code names."""
    errors: list[dict] = []
    if user is None:
        if not username:
            errors.append({"field": "username", "message": _("请填写用户名"), "code": "required"})
        else:
            try:
                UnicodeUsernameValidator()(username)
            except ValidationError:
                errors.append({"field": "username", "message": _("用户名只能包含字母、数字和 @ . + - _"),
                               "code": "invalid"})
            if len(username) > USERNAME_MAX_LENGTH:
                errors.append({"field": "username", "message": _("用户名最多 %(n)s 个字符") % {"n": USERNAME_MAX_LENGTH},
                               "code": "too_long"})
            elif User.objects.filter(username__iexact=username).exists():
                errors.append({"field": "username", "message": _("用户名“%(name)s”已被使用") % {"name": username},
                               "code": "duplicate"})
    if not display_name:
        errors.append({"field": "display_name", "message": _("请填写姓名"), "code": "required"})
    elif len(display_name) > 50:
        errors.append({"field": "display_name", "message": _("姓名最多 50 个字"), "code": "too_long"})
    if role not in Role.values:
        errors.append({"field": "role", "message": _("请选择有效的角色"), "code": "invalid"})
    branch = None
    if branch_code:
        branch = Branch.objects.filter(code=branch_code).first()
        if branch is None:
            errors.append({"field": "branch", "message": _("营业部“%(code)s”不存在") % {"code": branch_code},
                           "code": "unknown_branch"})
    elif role in BRANCH_ROLES:
        errors.append({"field": "branch", "message": _("投顾和营业部经理必须选择所属营业部"), "code": "branch_required"})
    if employee_code:
        if len(employee_code) > 32:
            errors.append({"field": "employee_code", "message": _("工号最多 32 个字符"), "code": "too_long"})
        else:
            holder = User.objects.filter(employee_code=employee_code).exclude(pk=getattr(user, "pk", None)).first()
            if holder is not None:
                errors.append({"field": "employee_code", "code": "duplicate",
                               "message": _("工号“%(code)s”已被 %(name)s 使用") % {"code": employee_code,
                                                                               "name": holder}})
    return errors, branch


def _other_active_admins(*, excluding: User) -> int:
    """Active admins besides ``excluding``, counted under a row lock so two admins cannot demote each other at once."""
    return len(User.objects.select_for_update().filter(role=Role.ADMIN, is_active=True).exclude(pk=excluding.pk))


@transaction.atomic
def staff_create(
    *, actor: User, username: str, display_name: str, role: str, branch_code: str | None = None,
    employee_code: str | None = None, password: str | None = None, ip_address: str | None = None,
) -> tuple[User, str | None]:
    """A new staff account. Without ``password`` a one-time password is generated and returned (show it once, it is
    stored only hashed); with one, it must pass the password validators. Either way it must be changed at first login."""
    _require_admin(actor)
    username, display_name = (username or "").strip(), (display_name or "").strip()
    employee_code = (employee_code or "").strip() or None
    errors, branch = _fields_check(user=None, username=username, display_name=display_name, role=role,
                                   branch_code=(branch_code or "").strip() or None, employee_code=employee_code)
    probe = User(username=username, display_name=display_name)
    if password:
        errors += _password_errors(password, probe)
    if errors:
        raise _invalid(errors)
    user = staff_upsert(username=username, password=None, role=role, display_name=display_name, branch=branch,
                        employee_code=employee_code)
    generated = None if password else one_time_password_generate(user=user)
    user.set_password(password or generated)
    user.must_change_password = True
    user.save(update_fields=["password", "must_change_password"])
    audit_record(actor=actor, action="staff.create", target_type="user", target_id=user.username,
                 ip_address=ip_address,
                 details={"user_id": user.pk, "role": user.role, "branch": branch.code if branch else None,
                          "employee_code": employee_code, "display_name": display_name,
                          "password_mode": PasswordMode.SET_BY_ADMIN if password else PasswordMode.GENERATED})
    return user, generated


@transaction.atomic
def staff_update(
    *, actor: User, user: User, display_name: str, role: str, branch_code: str | None = None,
    employee_code: str | None = None, ip_address: str | None = None,
) -> User:
    """Re-assign a staff member: role, branch, employee code, name. The audit row lists each change as [old, new]."""
    _require_admin(actor)
    user = User.objects.select_for_update(of=("self",)).select_related("branch").get(pk=user.pk)
    display_name = (display_name or "").strip()
    employee_code = (employee_code or "").strip() or None
    branch_code = (branch_code or "").strip() or None
    errors, branch = _fields_check(user=user, username=user.username, display_name=display_name, role=role,
                                   branch_code=branch_code, employee_code=employee_code)
    if not errors and role != user.role:
        if user.pk == actor.pk:
            errors.append({"field": "role", "message": _("不能修改自己的角色"), "code": StaffError.SELF})
        elif user.role == Role.ADMIN and user.is_active and not _other_active_admins(excluding=user):
            errors.append({"field": "role", "message": _("这是最后一位启用的系统管理员，不能改为其他角色"),
                           "code": StaffError.LAST_ADMIN})
    # whoever holds clients (an advisor; anyone, should data ever say so) keeps role and branch until they are handed over
    if not errors and (role != user.role or branch != user.branch):
        clients = user.customers.count()
        if clients:
            field = "role" if role != user.role else "branch"
            errors.append({"field": field, "code": StaffError.HOLDS_CLIENTS,
                           "message": _("该投顾名下还有 %(n)s 位客户，请先通过客户转接交给其他投顾，再修改角色或营业部")
                           % {"n": clients}})
    if errors:
        raise _invalid(errors)
    before = {"display_name": user.display_name, "role": user.role,
              "branch": user.branch.code if user.branch else None, "employee_code": user.employee_code}
    after = {"display_name": display_name, "role": role, "branch": branch.code if branch else None,
             "employee_code": employee_code}
    changes = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
    if not changes:
        return user
    user = staff_upsert(username=user.username, password=None, role=role, display_name=display_name, branch=branch,
                        employee_code=employee_code, wecom_userid=user.wecom_userid)
    audit_record(actor=actor, action="staff.update", target_type="user", target_id=user.username,
                 ip_address=ip_address, details={"user_id": user.pk, "changes": changes})
    return user


@transaction.atomic
def staff_deactivate(*, actor: User, user: User, ip_address: str | None = None) -> dict:
    """The account can no longer log in (open sessions end at their next request). Returns what the staff member
    still holds (``clients``, ``open_tasks``), which a 离职继承 should hand over; the audit row records it too."""
    _require_admin(actor)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.pk == actor.pk:
        raise ApplicationError(StaffError.SELF, _("不能停用自己的账号"))
    if not user.is_active:
        raise ApplicationError(StaffError.ALREADY, _("该账号已经停用"))
    if user.role == Role.ADMIN and not _other_active_admins(excluding=user):
        raise ApplicationError(StaffError.LAST_ADMIN, _("这是最后一位启用的系统管理员，不能停用"))
    holdings = staff_holdings(user=user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_record(actor=actor, action="staff.deactivate", target_type="user", target_id=user.username,
                 ip_address=ip_address, details={"user_id": user.pk, **holdings})
    return holdings


@transaction.atomic
def staff_activate(*, actor: User, user: User, ip_address: str | None = None) -> User:
    _require_admin(actor)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active:
        raise ApplicationError(StaffError.ALREADY, _("该账号已经启用"))
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(actor=actor, action="staff.activate", target_type="user", target_id=user.username,
                 ip_address=ip_address, details={"user_id": user.pk})
    return user


@transaction.atomic
def staff_password_reset(*, actor: User, user: User, password: str | None = None,
                         ip_address: str | None = None) -> str | None:
    """A new password the staff member must change at their next login: generated (returned, show it once) when
    ``password`` is empty, else the one given, which must pass the password validators. Their open sessions end."""
    _require_admin(actor)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.pk == actor.pk:
        raise ApplicationError(StaffError.SELF, _("请通过右上角的“修改密码”修改自己的密码"))
    if password:
        errors = _password_errors(password, user)
        if errors:
            raise _invalid(errors)
    generated = None if password else one_time_password_generate(user=user)
    user.set_password(password or generated)
    user.must_change_password = True
    user.save(update_fields=["password", "must_change_password"])
    audit_record(actor=actor, action="staff.password_reset", target_type="user", target_id=user.username,
                 ip_address=ip_address,
                 details={"user_id": user.pk,
                          "password_mode": PasswordMode.SET_BY_ADMIN if password else PasswordMode.GENERATED})
    return generated


@transaction.atomic
def staff_unlock(*, actor: User, user: User, ip_address: str | None = None) -> int:
    """Lift the login lockout (django-axes) of ``user``'s username from every address; returns the failure
    records cleared. The lockout is recorded as it was when lifted (since when, from where)."""
    from axes.utils import reset

    _require_admin(actor)
    lockout = staff_lockouts().get(user.username)
    cleared = reset(username=user.username)
    audit_record(actor=actor, action="staff.unlock", target_type="user", target_id=user.username,
                 ip_address=ip_address,
                 details={"user_id": user.pk, "attempts_cleared": cleared, "was_locked": lockout is not None,
                          "locked_since": lockout["since"].isoformat() if lockout else None,
                          "ip_addresses": lockout["ip_addresses"] if lockout else []})
    return cleared


@transaction.atomic
def staff_password_changed(*, user: User, ip_address: str | None = None) -> None:
    """The staff member chose their own password (after it was set by an admin, or any time)."""
    forced = user.must_change_password
    if forced:
        user.must_change_password = False
        user.save(update_fields=["must_change_password"])
    audit_record(actor=user, action="staff.password_change", target_type="user", target_id=user.username,
                 ip_address=ip_address, details={"user_id": user.pk, "after_reset": forced})


def staff_lockout_record(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """Receiver of axes' ``user_locked_out``: writes ``auth.lockout`` once per lockout, when the failure that locks
    the account happens (axes sends the signal again for every refused attempt while locked), so the users page
    can say since when an account is locked and compliance sees lockouts in the audit log."""
    from axes.helpers import get_failure_limit

    if request is None or not username:
        return
    failures = getattr(request, "axes_failures_since_start", None)
    if failures != get_failure_limit(request, getattr(request, "axes_credentials", None)):
        return
    audit_record(actor=None, actor_label="axes", action="auth.lockout", target_type="user", target_id=username,
                 ip_address=ip_address, details={"failures": failures})
