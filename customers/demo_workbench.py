"""Demo tasks and follow-up notes so each demo advisor's workbench has a realistic day on it."""

import random
from datetime import timedelta

from django.utils import timezone

from core.demo import STAFF
from core.models import User
from customers.models import Customer, Note, Task
from customers.services import note_create, task_create

TASKS = [
    ("回访开户未入金客户，了解入金顾虑", "sop", "SOP：开户未入金召回"),
    ("客户浏览两融介绍 3 次，电话沟通开通条件", "rule", "规则：两融意向跟进"),
    ("风险测评即将过期，提醒客户重新测评", "rule", "规则：风测到期提醒"),
    ("重要挽留客户 90 天未交易，约一次面谈", "sop", "SOP：重要挽留客户唤醒"),
    ("新加企业微信客户，发送新手投教资料", "sop", "SOP：新客 7 天陪伴"),
    ("跟进上周的基金定投咨询", "manual", ""),
]
NOTES = [
    "客户说想了解一下两融怎么开通，下周再聊",
    "客户有一笔银行理财下个月到期，想看看我们的固收产品",
    "客户是新手，不太懂基金，晚上方便联系",
    "客户对上次的服务不满意，说App转账太慢",
    "客户炒股多年，对科创板很感兴趣",
]


def demo_workbench_seed(*, seed: int = 7) -> int:
    """Idempotent: does nothing once the demo advisors have tasks. Returns tasks created."""
    if Task.objects.exists():
        return 0
    rng = random.Random(seed)
    now = timezone.now()
    created = 0
    advisors = User.objects.filter(username__in=[u for u, _, role, _, _ in STAFF if role == "advisor"])
    for advisor in advisors:
        customers = list(Customer.objects.filter(advisor=advisor).order_by("-total_assets")[:40])
        if not customers:
            continue
        for i, (title, source, label) in enumerate(TASKS):
            due = now + timedelta(hours=rng.choice([-50, -26, -3, 2, 5, 30, 72])) if i else now - timedelta(days=2)
            task_create(customer=rng.choice(customers), assignee=advisor, title=title, due_at=due, source=source,
                        source_label=label)
            created += 1
        if not Note.objects.filter(author=advisor).exists():
            for text, customer in zip(NOTES, rng.sample(customers, k=min(len(NOTES), len(customers))), strict=False):
                note_create(author=advisor, customer=customer, body=text)
    return created
