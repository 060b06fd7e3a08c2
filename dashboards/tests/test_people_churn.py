"""流失预警: the score and its reasons on hand-made clients, the churn_risk tag and the SOP it starts, the page in
each role's scope, the CSV, and the actions (tasks, SOP enrollment) with their idempotency and errors."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from core.models import AuditLog
from customers.models import BehaviourEvent, Task
from customers.tests.factories import CustomerFactory, TradeFactory
from dashboards import churn
from dashboards.models import ChurnScore
from tagging.models import CustomerTag, Tag, TagSource

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_people_cache():
    cache.delete_many([churn.SUMMARY_KEY, churn.BACKTEST_KEY])
    yield
    cache.delete_many([churn.SUMMARY_KEY, churn.BACKTEST_KEY])


def _events(customer, days_ago: list[int], type_="app_login", now=None):
    now = now or timezone.now()
    for i, d in enumerate(days_ago):
        BehaviourEvent.objects.create(event_id=f"E{customer.pk}-{d}-{i}-{type_}", customer=customer, type=type_,
                                      occurred_at=now - timedelta(days=d, hours=1))


def _trades(customer, days_ago: list[int], side="buy", amount=Decimal("10000")):
    for d in days_ago:
        TradeFactory(customer=customer, traded_at=timezone.now() - timedelta(days=d, hours=1), side=side, amount=amount)


def _slipping(advisor, name, mobile):
    """Logged in 4×/month, traded 6× around 100 days ago, then nothing: 35 + 15 + 25 = 75, high."""
    c = CustomerFactory(advisor=advisor, name=name, mobile=mobile)
    _events(c, [31 + 7 * i for i in range(12)])
    _trades(c, [95, 98, 101, 104, 107, 110])
    return c


@pytest.fixture
def book(advisor, same_branch_advisor, other_branch_advisor):
    from tagging.models import CustomerTierHistory, TierRun
    from tagging.tiers import tier_scheme_active

    slipping = _slipping(advisor, "流失甲", "13800000001")
    steady = CustomerFactory(advisor=advisor, name="稳定乙", mobile="13800000002")
    _events(steady, [3, 10, 17, 24, *[31 + 7 * i for i in range(12)]])
    _trades(steady, [5, 40, 60, 80])
    outflow = CustomerFactory(advisor=same_branch_advisor, name="流出丙", mobile="13800000003",
                              total_assets=Decimal("40000"))
    _trades(outflow, [10], side="sell", amount=Decimal("60000"))
    run = TierRun.objects.create(scheme=tier_scheme_active(), as_of=timezone.localdate(), window_days=365, method="mean")
    CustomerTierHistory.objects.create(customer=outflow, run=run, from_code="important_value",
                                       to_code="important_retain", at=timezone.now() - timedelta(days=10))
    shanghai = _slipping(other_branch_advisor, "上海丁", "13900000004")
    prospect = CustomerFactory(advisor=advisor, name="潜客戊", opened_at=None, funnel_stage="id_uploaded")
    return {"slipping": slipping, "steady": steady, "outflow": outflow, "shanghai": shanghai, "prospect": prospect}


def _score(customer) -> ChurnScore:
    return ChurnScore.objects.get(customer=customer)


def test_scores_add_up_their_reasons_and_set_the_level(book):
    run = churn.churn_scores_compute()
    assert run["scored"] == 4  # the prospect has no account yet: no score
    slipping = _score(book["slipping"])
    assert (slipping.score, slipping.level) == (75, "high")
    assert [(r["code"], r["points"]) for r in slipping.reasons] == [
        ("activity_drop", 35), ("trade_recency", 25), ("trade_drop", 15)]
    labels = [r["label"] for r in slipping.reasons]
    assert labels[0] == "近30天 App 行为 0 次，前90天月均 4.0 次（下降 100%）"
    assert labels[1] == "距上次交易 95 天"
    assert labels[2] == "近30天交易 0 笔，前90天月均 2.0 笔"
    steady = _score(book["steady"])
    assert (steady.score, steady.level, steady.reasons) == (0, "low", [])
    outflow = _score(book["outflow"])
    assert (outflow.score, outflow.level) == (45, "medium")
    assert {r["code"]: r["points"] for r in outflow.reasons} == {"asset_outflow": 30, "tier_drop": 15}
    assert "分层由「重要价值」降为「重要挽留」" in [r["label"] for r in outflow.reasons]
    assert "近30天资金流出约 ¥60,000（约占资产 60%）" in [r["label"] for r in outflow.reasons]
    assert not ChurnScore.objects.filter(customer=book["prospect"]).exists()


def test_high_risk_clients_get_the_churn_tag_and_enter_churn_journeys(book, operator,
                                                                      django_capture_on_commit_callbacks):
    from sop.models import Enrollment
    from sop.services import journey_create, journey_publish

    journey = journey_create(actor=operator, name="流失挽留", definition={
        "trigger": {"type": "churn_risk"}, "start": "call",
        "steps": [{"id": "call", "type": "task", "title": "挽留回访", "due_hours": 24}]})
    journey_publish(actor=operator, journey=journey)
    manual = Tag.objects.get_or_create(code="churn_risk", defaults={"name": "流失风险",
                                                                     "category_id": Tag.objects.first().category_id})[0]
    CustomerTag.objects.create(customer=book["steady"], tag=manual, source=TagSource.MANUAL, set_by_label="advisor_a")
    with django_capture_on_commit_callbacks(execute=True):
        run = churn.churn_scores_compute()
    assert run["tag_added"] == 2
    tagged = CustomerTag.objects.filter(tag__code="churn_risk", source=TagSource.RULE)
    assert set(tagged.values_list("customer_id", flat=True)) == {book["slipping"].pk, book["shanghai"].pk}
    tag = tagged.get(customer=book["slipping"])
    assert tag.evidence.startswith("流失预警分 75：近30天 App 行为 0 次") and tag.evidence_data["score"] == 75
    assert set(Enrollment.objects.filter(journey=journey).values_list("customer_id", flat=True)) == {
        book["slipping"].pk, book["shanghai"].pk}

    _events(book["slipping"], [1, 2, 3, 4, 5])  # back in the App: activity no longer down, 40 points: medium
    with django_capture_on_commit_callbacks(execute=True):
        run = churn.churn_scores_compute()
    assert _score(book["slipping"]).level == "medium"
    assert run["tag_removed"] == 1
    assert not CustomerTag.objects.filter(customer=book["slipping"], tag__code="churn_risk").exists()
    # the advisor's own churn_risk tag on a low-risk client stays: only the score's tags are the score's to remove
    assert CustomerTag.objects.filter(customer=book["steady"], tag__code="churn_risk", source=TagSource.MANUAL).exists()


def _table(response) -> list[dict]:
    html = response.content.decode()
    return [{"external_id": m.group(1), "score": int(m.group(2))}
            for m in re.finditer(r'data-testid="churn-row" data-external-id="([^"]+)" data-score="(\d+)"', html)]


def test_each_role_sees_its_own_scope(client, book, advisor, same_branch_advisor, branch_manager, hq_manager,
                                      other_branch_advisor):
    churn.churn_scores_compute()
    client.force_login(branch_manager)
    response = client.get("/dashboards/analyses/churn/?level=at_risk")
    assert response.status_code == 200
    assert [r["external_id"] for r in _table(response)] == [book["slipping"].external_id, book["outflow"].external_id]
    body = response.content.decode()
    assert "上海丁" not in body and "139****0004" not in body
    assert response.context["summary"]["levels"] == {"high": 1, "medium": 1, "low": 1}
    assert client.get(f"/dashboards/analyses/churn/?advisor={other_branch_advisor.pk}").status_code == 404

    client.force_login(advisor)
    response = client.get("/dashboards/analyses/churn/?level=at_risk")
    assert [r["external_id"] for r in _table(response)] == [book["slipping"].external_id]
    assert "流失甲" in response.content.decode() and "138****0001" in response.content.decode()
    assert client.get(f"/dashboards/analyses/churn/?advisor={same_branch_advisor.pk}").status_code == 404

    client.force_login(hq_manager)
    response = client.get("/dashboards/analyses/churn/")
    assert {r["external_id"] for r in _table(response)} == {book["slipping"].external_id, book["shanghai"].external_id}
    assert response.context["summary"]["levels"]["high"] == 2
    advisors = {r["advisor_id"]: (r["high"], r["medium"]) for r in response.context["summary"]["advisors"]}
    assert advisors == {advisor.pk: (1, 0), same_branch_advisor.pk: (0, 1), other_branch_advisor.pk: (1, 0)}


def test_operators_see_names_masked_and_the_csv_matches_the_table(client, book, operator, branch_manager):
    churn.churn_scores_compute()
    client.force_login(operator)
    body = client.get("/dashboards/analyses/churn/").content.decode()
    assert "流**" in body and "流失甲" not in body

    client.force_login(branch_manager)
    page = client.get("/dashboards/analyses/churn/?level=at_risk")
    response = client.get("/dashboards/analyses/churn.csv?level=at_risk")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["客户号", "姓名", "手机号", "营业部", "投顾", "分层", "流失风险分", "风险等级", "原因"]
    assert [{"external_id": r[0], "score": int(r[6])} for r in rows[1:]] == _table(page)
    assert rows[1][1:3] == ["流失甲", "138****0001"] and rows[1][7] == "高"
    assert rows[1][8].startswith("近30天 App 行为 0 次，前90天月均 4.0 次（下降 100%）（+35）")
    assert AuditLog.objects.filter(action="churn.export", actor=branch_manager).count() == 1


def test_follow_up_tasks_are_created_once_a_day_for_the_clients_advisor(client, book, branch_manager, advisor,
                                                                         same_branch_advisor):
    churn.churn_scores_compute()
    client.force_login(branch_manager)
    ids = [book["slipping"].pk, book["outflow"].pk]
    response = client.post("/dashboards/analyses/churn/tasks/", {"customers": ids}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "已创建 2 个跟进任务" in response.content.decode()
    tasks = Task.objects.filter(source="churn").order_by("customer_id")
    assert [(t.customer_id, t.assignee_id) for t in tasks] == [(book["slipping"].pk, advisor.pk),
                                                               (book["outflow"].pk, same_branch_advisor.pk)]
    assert tasks[0].title == "流失预警回访：流失甲" and tasks[0].source_label.startswith("流失预警 75 分：近30天 App")
    assert timedelta(hours=47) < tasks[0].due_at - timezone.now() <= timedelta(hours=48)
    again = client.post("/dashboards/analyses/churn/tasks/", {"advisor": advisor.pk}, HTTP_HX_REQUEST="true")
    assert "已创建 0 个跟进任务（今天已有任务 1 位" in again.content.decode()
    assert Task.objects.filter(source="churn").count() == 2
    audit = AuditLog.objects.filter(action="churn.tasks_create").order_by("pk")
    assert [a.details["created"] for a in audit] == [2, 0]


def test_bad_or_foreign_input_is_refused_and_changes_nothing(client, book, branch_manager, other_branch_advisor):
    churn.churn_scores_compute()
    client.force_login(branch_manager)
    for data, message in [
        ({}, "请先勾选客户，或选择一位投顾的全部高风险客户"),
        ({"customers": ["x1"]}, "客户编号无效"),
        ({"customers": [book["shanghai"].pk]}, "所选客户不存在、没有流失预警分或不在您的数据范围内"),
        ({"customers": [book["prospect"].pk]}, "所选客户不存在、没有流失预警分或不在您的数据范围内"),
        ({"advisor": other_branch_advisor.pk}, "投顾不存在或不在您的数据范围内"),
    ]:
        response = client.post("/dashboards/analyses/churn/tasks/", data, HTTP_HX_REQUEST="true")
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    response = client.post("/dashboards/analyses/churn/enroll/", {"customers": [book["slipping"].pk], "journey": "999"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "请选择一个运行中的 SOP 旅程" in response.content.decode()
    assert not Task.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="churn.").exists()


def test_enrolling_into_a_running_journey_is_idempotent_per_day(client, book, branch_manager, operator):
    from sop.models import Enrollment, Journey
    from sop.services import journey_create, journey_publish

    churn.churn_scores_compute()
    journey = journey_create(actor=operator, name="沉睡唤醒", definition={
        "trigger": {"type": "manual"}, "start": "call",
        "steps": [{"id": "call", "type": "task", "title": "唤醒回访", "due_hours": 24}]})
    journey_publish(actor=operator, journey=journey)
    draft = journey_create(actor=operator, name="草稿旅程", definition=journey.draft)
    client.force_login(branch_manager)
    page = client.get("/dashboards/analyses/churn/")
    assert [j.pk for j in page.context["journeys"]] == [journey.pk]
    data = {"customers": [book["slipping"].pk, book["outflow"].pk], "journey": journey.pk}
    response = client.post("/dashboards/analyses/churn/enroll/", data, HTTP_HX_REQUEST="true")
    assert "2 位客户已加入「沉睡唤醒」" in response.content.decode()
    Enrollment.objects.filter(journey=journey).update(status=Enrollment.Status.COMPLETED)
    response = client.post("/dashboards/analyses/churn/enroll/", data, HTTP_HX_REQUEST="true")
    assert "0 位客户已加入" in response.content.decode()  # same day: the trigger key was seen
    assert Enrollment.objects.filter(journey=journey).count() == 2
    response = client.post("/dashboards/analyses/churn/enroll/", {**data, "journey": draft.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and Journey.objects.get(pk=draft.pk).enrollments.count() == 0
    assert AuditLog.objects.filter(action="churn.sop_enroll").count() == 2


def test_pages_are_for_dashboard_roles_only_and_hq_may_queue_a_recompute(client, book, compliance, advisor,
                                                                           hq_manager):
    churn.churn_scores_compute()
    client.force_login(compliance)
    assert client.get("/dashboards/analyses/churn/").status_code == 404
    client.force_login(advisor)
    assert client.post("/dashboards/analyses/churn/refresh/", {"what": "scores"}).status_code == 404
    client.force_login(hq_manager)
    response = client.post("/dashboards/analyses/churn/refresh/", {"what": "backtest"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "已提交计算" in response.content.decode()
    assert AuditLog.objects.filter(action="churn.backtest_queued", actor=hq_manager).count() == 1
    response = client.post("/dashboards/analyses/churn/refresh/", {"what": "everything"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "未知的计算类型" in response.content.decode()
    body = client.get("/dashboards/analyses/churn/").content.decode()
    assert 'data-testid="backtest-missing"' in body  # not computed yet: the page says so and how


@pytest.mark.parametrize("target", ["https://evil.example/phish", "//evil.example/phish", "/\\evil.example",
                                    "javascript:alert(1)", "http://testserver.evil.example/"])
def test_going_back_after_a_post_stays_on_this_site(client, book, hq_manager, target):
    client.force_login(hq_manager)
    for url, fallback in (("/dashboards/analyses/churn/refresh/", "/dashboards/analyses/churn/"),
                          ("/dashboards/analyses/people/refresh/", "/dashboards/analyses/advisors/")):
        response = client.post(url, {"what": "backtest", "next": target})
        assert response.status_code == 302 and response["Location"] == fallback, url
    response = client.post("/dashboards/analyses/churn/refresh/",
                           {"what": "backtest", "next": "/dashboards/analyses/churn/?level=at_risk"})
    assert response["Location"] == "/dashboards/analyses/churn/?level=at_risk"  # a path on this site is kept
