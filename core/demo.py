"""Demo branches and staff: the logins ``make run`` prints."""

from core.models import Role
from core.services import branch_upsert, staff_upsert

DEMO_PASSWORD = "scrm-demo-2026"

BRANCHES = [
    ("BJ01", "北京金融街营业部", "北京"),
    ("SH01", "上海陆家嘴营业部", "上海"),
    ("SZ01", "深圳福田营业部", "深圳"),
    ("HZ01", "杭州西湖营业部", "浙江"),
]

# username, display name, role, branch code, employee code
STAFF = [
    ("advisor_bj", "王磊", Role.ADVISOR, "BJ01", "E1001"),
    ("advisor_bj2", "李娜", Role.ADVISOR, "BJ01", "E1002"),
    ("advisor_sh", "张伟", Role.ADVISOR, "SH01", "E2001"),
    ("advisor_sh2", "陈静", Role.ADVISOR, "SH01", "E2002"),
    ("advisor_sz", "刘洋", Role.ADVISOR, "SZ01", "E3001"),
    ("advisor_hz", "赵敏", Role.ADVISOR, "HZ01", "E4001"),
    ("manager_bj", "孙强", Role.BRANCH_MANAGER, "BJ01", "M1001"),
    ("manager_sh", "周婷", Role.BRANCH_MANAGER, "SH01", "M2001"),
    ("hq", "吴总", Role.HQ_MANAGER, None, "H0001"),
    ("operator", "郑运营", Role.OPERATOR, None, "O0001"),
    ("compliance", "钱合规", Role.COMPLIANCE, None, "C0001"),
    ("admin", "系统管理员", Role.ADMIN, None, "A0001"),
]


def demo_staff_load() -> list[tuple[str, str]]:
    """Idempotent. Returns (username, role label) of the demo logins."""
    branches = {code: branch_upsert(code=code, name=name, region=region) for code, name, region in BRANCHES}
    logins = []
    for username, name, role, branch_code, employee_code in STAFF:
        staff_upsert(
            username=username, password=DEMO_PASSWORD, role=role, display_name=name,
            branch=branches.get(branch_code), employee_code=employee_code,
            wecom_userid=f"wx_{username}",
        )
        logins.append((username, str(role.label)))
    return logins
