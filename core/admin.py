from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from core.models import AuditLog, Branch, User


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region"]
    search_fields = ["code", "name"]


@admin.register(User)
class StaffAdmin(UserAdmin):
    list_display = ["username", "display_name", "role", "branch", "employee_code", "is_active"]
    list_filter = ["role", "branch", "is_active"]
    fieldsets = UserAdmin.fieldsets + (
        ("SCRM", {"fields": ("display_name", "role", "branch", "employee_code", "wecom_userid")}),
    )
    add_fieldsets = UserAdmin.add_fieldsets + (
        ("SCRM", {"fields": ("display_name", "role", "branch", "employee_code")}),
    )

    # Staff are managed at 设置 → 用户与权限 (core/staff_services.py): audited, a forced password change, the rules on
    # roles, branches and clients still held. Here they are read-only, so none of that can be bypassed (nor
    # is_superuser set on an advisor).
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_label", "action", "target_type", "target_id", "reason"]
    list_filter = ["action"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
