from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditLog
from customers.models import Note, Task
from customers.tests.factories import CustomerFactory, TaskFactory, TradeFactory

pytestmark = pytest.mark.django_db


def test_list_shows_masked_mobile_count_and_filters(client, advisor):
    CustomerFactory(advisor=advisor, name="张三", mobile="13811112222", risk_level="C4")
    CustomerFactory(advisor=advisor, name="李四", risk_level="C2")
    client.force_login(advisor)
    body = client.get("/customers/").content.decode()
    assert "共 2 位客户" in body and "138****2222" in body and "13811112222" not in body
    filtered = client.get("/customers/", {"risk_level": "C4"}).content.decode()
    assert "张三" in filtered and "李四" not in filtered and "共 1 位客户" in filtered


def test_bad_filter_input_is_reported_not_ignored(client, advisor):
    client.force_login(advisor)
    response = client.get("/customers/", {"no_contact_days": "-3"})
    assert response.status_code == 200
    assert "筛选条件有误" in response.content.decode()


def test_detail_page_has_every_section(client, advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13811112222", id_number="11010519491231002X")
    TradeFactory(customer=customer, traded_at=timezone.now())
    client.force_login(advisor)
    body = client.get(f"/customers/c/{customer.external_id}/").content.decode()
    for section in ('id="profile"', 'id="tags"', 'id="trades"', 'id="events"', 'id="touches"', 'id="followup"',
                    'id="groups"', 'id="history"'):
        assert section in body
    assert "138****2222" in body and "**************002X" in body and "110***" not in body
    assert "13811112222" not in body and "11010519491231002X" not in body
    assert 'data-testid="trade-summary"' in body


def test_operator_sees_no_reveal_action(client, operator, advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13811112222")
    client.force_login(operator)
    body = client.get(f"/customers/c/{customer.external_id}/").content.decode()
    assert "138****2222" in body and "reveal-mobile" not in body
    response = client.post(f"/customers/c/{customer.external_id}/reveal/", {"field": "mobile", "reason": "看看"})
    assert response.status_code == 403 and "13811112222" not in response.content.decode()


def test_reveal_over_http_is_audited(client, advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13811112222")
    client.force_login(advisor)
    missing = client.post(f"/customers/c/{customer.external_id}/reveal/", {"field": "mobile", "reason": ""})
    assert missing.status_code == 400 and not AuditLog.objects.exists()
    response = client.post(f"/customers/c/{customer.external_id}/reveal/", {"field": "mobile", "reason": "核实身份"},
                           REMOTE_ADDR="10.9.8.7")
    assert "13811112222" in response.content.decode()
    assert AuditLog.objects.get().ip_address == "10.9.8.7"


def test_add_note_and_complete_task_over_http(client, advisor):
    customer = CustomerFactory(advisor=advisor)
    task = TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now() - timedelta(hours=1))
    client.force_login(advisor)
    assert client.post(f"/customers/c/{customer.external_id}/notes/", {"body": ""}).status_code == 400
    response = client.post(f"/customers/c/{customer.external_id}/notes/", {"body": "想开通两融"})
    assert "想开通两融" in response.content.decode() and Note.objects.count() == 1
    bad = client.post(f"/customers/tasks/{task.pk}/complete/", {"outcome": "bogus"})
    assert bad.status_code == 400
    ok = client.post(f"/customers/tasks/{task.pk}/complete/", {"outcome": "reached", "note": "已沟通"})
    assert ok.status_code == 200 and "已完成" in ok.content.decode()
    assert Task.objects.get().status == "done"


def test_workbench_lists_overdue_before_today(client, advisor):
    customer = CustomerFactory(advisor=advisor)
    now = timezone.localtime()
    TaskFactory(customer=customer, assignee=advisor, title="今天的任务", due_at=now.replace(hour=23, minute=0))
    TaskFactory(customer=customer, assignee=advisor, title="逾期的任务", due_at=now - timedelta(days=2))
    client.force_login(advisor)
    body = client.get("/").content.decode()
    assert body.index("逾期的任务") < body.index("今天的任务")
    assert "逾期" in body


def test_compliance_audit_log_filter_and_audited_export(client, compliance, advisor):
    customer = CustomerFactory(advisor=advisor, mobile="13811112222")
    client.force_login(advisor)
    client.post(f"/customers/c/{customer.external_id}/reveal/", {"field": "mobile", "reason": "核实身份"})
    assert client.get("/compliance/").status_code == 404  # advisors do not see the audit log
    client.force_login(compliance)
    body = client.get("/compliance/", {"target": customer.external_id}).content.decode()
    assert "customer.reveal" in body and "核实身份" in body
    assert "共 0 条审计记录" in client.get("/compliance/", {"target": "nobody"}).content.decode()
    bad = client.get("/compliance/", {"since": "2026-12-01", "until": "2026-11-01"}).content.decode()
    assert "结束日期不能早于开始日期" in bad
    export = client.get("/compliance/audit.csv")
    csv_text = b"".join(export.streaming_content).decode()
    assert "customer.reveal" in csv_text
    assert AuditLog.objects.filter(action="audit.export", actor=compliance).exists()


def test_a_client_without_trades_shows_words_not_python_none(client, advisor, operator):
    from tagging.tiers import tier_run_compute

    customer = CustomerFactory(advisor=advisor)
    tier_run_compute()  # a tier with no recency: no trades at all
    client.force_login(advisor)
    body = client.get(f"/customers/c/{customer.external_id}/").content.decode()
    assert 'data-testid="tier-badge"' in body and "尚无交易" in body and "None" not in body
    client.force_login(operator)
    editor = client.get("/tags/t/margin_intent/").content.decode()
    assert 'data-testid="rule-preview-empty"' in editor and "None" not in editor


def test_the_360_page_lists_touches_trades_events_notes_and_history_newest_first(client, advisor):
    """Every time-ordered section of the 360° page reads newest first, and 历史 interleaves tier and tag changes by
    time (it used to list every tier change, then every tag change)."""
    import re

    from customers.models import BehaviourEvent, Touch
    from tagging.models import CustomerTagHistory, CustomerTierHistory, Tag, TierRun, TierScheme

    customer = CustomerFactory(advisor=advisor)
    now = timezone.now().replace(second=0, microsecond=0)
    hours = [30, 2, 50, 10, 70]  # made in no particular order
    for i, h in enumerate(hours):
        at = now - timedelta(hours=h)
        TradeFactory(customer=customer, traded_at=at)
        BehaviourEvent.objects.create(event_id=f"ev-order-{i}", customer=customer, type="app_login", occurred_at=at)
        Touch.objects.create(customer=customer, channel="sms", direction="out", status="sent", content=f"第{i}条",
                             occurred_at=at)
        Note.objects.create(customer=customer, author=advisor, body=f"跟进{i}", created_at=at)
    run = TierRun.objects.create(scheme=TierScheme.objects.get(active=True), as_of=timezone.localdate(),
                                 window_days=365, method="mean")
    tag = Tag.objects.get(code="high_net_worth")
    for h in (40, 5):
        CustomerTierHistory.objects.create(customer=customer, run=run, from_code="general_retain",
                                           to_code="important_value", at=now - timedelta(hours=h))
    for h in (60, 20, 1):
        CustomerTagHistory.objects.create(customer=customer, tag=tag, action="added", source="manual",
                                          actor_label="advisor_a", at=now - timedelta(hours=h))
    client.force_login(advisor)
    body = client.get(f"/customers/c/{customer.external_id}/").content.decode()

    def times(testid):
        section = body.split(f'data-testid="{testid}"')[1].split("</ul>")[0]
        return re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", section)

    for testid, expected in (("recent-trades", 5), ("timeline", 5), ("touches", 5), ("notes", 5), ("history", 5)):
        stamps = times(testid)
        assert len(stamps) == expected and stamps == sorted(stamps, reverse=True), (testid, stamps)
    history = body.split('data-testid="history"')[1].split("</ul>")[0]
    assert [("分层" in row) for row in history.split('data-testid="history-row"')[1:]] == [False, True, False, True, False]
