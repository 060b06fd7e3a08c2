"""价值分层 over HTTP (who sees what, in which scope; 重新计算; strategy validation) and in Chromium."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from conftest import ARTIFACTS
from core.models import AuditLog
from customers.tests.factories import CustomerFactory, TradeFactory
from tagging import tiers
from tagging.models import TierDefinition, TierRun

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 3, 31)
AT = datetime(2026, 3, 31, 2, 0, tzinfo=UTC)


def count_in(response, code: str) -> int:
    match = re.search(rf'data-testid="tier-count-{code}">([\d,]+)<', response.content.decode())
    return int(match.group(1).replace(",", "")) if match else 0


@pytest.fixture
def book(db, advisor, other_branch_advisor):
    """Beijing: two traders and one idle client; Shanghai: one trader, one idle; then one full run."""
    tiers.tier_scheme_ensure_default()
    bj = [CustomerFactory(advisor=advisor, name=f"北京客户{i}", total_assets=Decimal(20000)) for i in range(3)]
    sh = [CustomerFactory(advisor=other_branch_advisor, name=f"上海客户{i}", total_assets=Decimal(5000))
          for i in range(2)]
    for c in (bj[0], bj[1], sh[0]):
        TradeFactory(customer=c, traded_at=AT, amount=Decimal(1000))
    tiers.tier_run_compute(as_of=AS_OF)
    return bj, sh


def test_who_may_open_the_page(client, book, operator, hq_manager, branch_manager, admin_user, advisor, compliance):
    url = reverse("tagging:tiers")
    for user in (operator, hq_manager, branch_manager, admin_user):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200, user.role
        assert 'data-nav="tiers"' in response.content.decode()
    for user in (advisor, compliance):
        client.force_login(user)
        assert client.get(url).status_code == 404, user.role
    client.logout()
    assert client.get(url).status_code == 302


def test_counts_and_assets_follow_the_viewers_scope(client, book, branch_manager, hq_manager):
    client.force_login(branch_manager)
    mine = client.get(reverse("tagging:tiers"))
    assert (count_in(mine, "general_retain"), count_in(mine, "no_trade")) == (2, 1)
    assert "共 3 位客户" in mine.content.decode()
    client.force_login(hq_manager)
    everyone = client.get(reverse("tagging:tiers"))
    assert (count_in(everyone, "general_retain"), count_in(everyone, "no_trade")) == (3, 2)
    body = everyone.content.decode()
    assert 'id="tier-chart-data"' in body and "专属投顾 1 对 1 企业微信、电话" in body  # strategy per tier
    assert 'data-testid="tier-matrix-table"' in body and "未分层" in body  # first run: everyone came from nowhere


def test_each_tier_drills_down_to_the_customer_list(client, book, branch_manager):
    client.force_login(branch_manager)
    page = client.get(reverse("tagging:tiers")).content.decode()
    assert 'href="/customers/?tier=no_trade"' in page
    listing = client.get("/customers/?tier=no_trade").content.decode()
    assert "北京客户2" in listing and "北京客户0" not in listing and "上海客户1" not in listing


def test_empty_state_says_what_to_do(client, db, operator):
    tiers.tier_scheme_ensure_default()
    client.force_login(operator)
    body = client.get(reverse("tagging:tiers")).content.decode()
    assert "还没有计算过价值分层" in body and "重新计算" in body


def test_only_runners_get_the_button_and_may_post(client, book, branch_manager, operator,
                                                  django_capture_on_commit_callbacks):
    client.force_login(branch_manager)
    assert 'data-testid="tier-recompute"' not in client.get(reverse("tagging:tiers")).content.decode()
    assert client.post(reverse("tagging:tiers")).status_code == 403
    client.force_login(operator)
    assert 'data-testid="tier-recompute"' in client.get(reverse("tagging:tiers")).content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("tagging:tiers"), HTTP_HX_REQUEST="true")
    run = TierRun.objects.latest("id")
    body = response.content.decode()
    assert response.status_code == 200 and len(queued) == 1 and run.status == "running"
    assert 'data-status="running"' in body and f'hx-get="/tags/tiers/runs/{run.pk}/"' in body
    again = client.post(reverse("tagging:tiers"), HTTP_HX_REQUEST="true").content.decode()
    assert "另一个分层计算正在进行" in again and TierRun.objects.filter(status="running").count() == 1
    assert AuditLog.objects.filter(action="tier.run_start", actor=operator, target_id=str(run.pk)).exists()


def test_run_status_polls_until_done_then_refreshes_the_results(client, book, operator, branch_manager, advisor,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = tiers.tier_run_start(actor=operator, as_of=AS_OF)
    url = reverse("tagging:tier_run_status", kwargs={"run_id": run.pk})
    client.force_login(operator)
    running = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="running"' in running and "hx-trigger=\"every 1s\"" in running
    assert "tier-results" not in running
    tiers.tier_run_execute(run_id=run.pk)
    done = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-status="done"' in done and "every 1s" not in done and 'aria-valuenow="100"' in done
    assert 'id="tier-results" data-testid="tier-results" hx-swap-oob="true"' in done
    for user in (branch_manager, advisor):  # they do not start runs, so they do not follow them
        client.force_login(user)
        assert client.get(url).status_code == 404
    client.force_login(operator)
    assert client.get(reverse("tagging:tier_run_status", kwargs={"run_id": run.pk + 999})).status_code == 404


def test_branch_manager_sees_a_running_run_without_polling(client, book, operator, branch_manager,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        tiers.tier_run_start(actor=operator)
    client.force_login(branch_manager)
    body = client.get(reverse("tagging:tiers")).content.decode()
    assert 'data-testid="tier-run-elsewhere"' in body and "/tags/tiers/runs/" not in body


def test_operator_edits_a_strategy_with_errors_next_to_the_fields(client, book, operator):
    url = reverse("tagging:tier_strategy_edit", kwargs={"code": "important_value"})
    client.force_login(operator)
    form = client.get(url).content.decode()
    assert "专属投顾 1 对 1 企业微信、电话" in form
    data = {"channels": "", "cadence": "每周", "products": "两融、保本理财", "activities": "策略会",
            "suggested_sop": "高净值客户关怀"}
    response = client.post(url, data)
    body = response.content.decode()
    assert response.status_code == 400
    channels = body[body.index('data-testid="field-channels"'):body.index('data-testid="field-cadence"')]
    products = body[body.index('data-testid="field-products"'):body.index('data-testid="field-activities"')]
    assert "请填写此项" in channels and "is-invalid" in channels
    assert "不得含有承诺收益的用语：保本" in products and "请填写此项" not in products
    assert TierDefinition.objects.get(scheme__active=True, code="important_value").channels == "专属投顾 1 对 1 企业微信、电话"
    data.update(channels="企业微信 1 对 1", products="两融、期权", cadence=" 每周 ")
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"] == reverse("tagging:tiers")
    saved = TierDefinition.objects.get(scheme__active=True, code="important_value")
    assert (saved.channels, saved.cadence, saved.products) == ("企业微信 1 对 1", "每周", "两融、期权")
    audit = AuditLog.objects.get(action="tier.strategy_update")
    assert audit.actor == operator and audit.details["before"]["channels"] == "专属投顾 1 对 1 企业微信、电话"
    assert "企业微信 1 对 1" in client.get(reverse("tagging:tiers")).content.decode()


def test_only_operators_and_admins_edit_strategies(client, book, admin_user, hq_manager, branch_manager, advisor,
                                                   operator):
    url = reverse("tagging:tier_strategy_edit", kwargs={"code": "general_value"})
    client.force_login(admin_user)
    assert client.get(url).status_code == 200
    for user in (hq_manager, branch_manager, advisor):
        client.force_login(user)
        assert client.get(url).status_code == 404
        assert client.post(url, {"channels": "x", "cadence": "y"}).status_code == 404
        assert 'data-testid="tier-edit-general_value"' not in client.get(reverse("tagging:tiers")).content.decode()
    client.force_login(operator)
    assert client.get(reverse("tagging:tier_strategy_edit", kwargs={"code": "nope"})).status_code == 404


# --- in Chromium, with the real Celery worker ------------------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_operator_recomputes_and_watches_the_progress_bar_finish(page, login, celery_worker, operator, advisor):
    tiers.tier_scheme_ensure_default()
    for i in range(4):
        customer = CustomerFactory(advisor=advisor, name=f"浏览器客户{i}", total_assets=Decimal(10000))
        if i < 3:
            TradeFactory(customer=customer, traded_at=timezone.now() - timedelta(days=3), amount=Decimal(500))
    login(operator)
    page.click("[data-nav=tiers]")
    page.wait_for_selector("[data-testid=tier-empty]")
    page.wait_for_load_state("load")  # htmx (deferred) has wired the button
    page.click("[data-testid=tier-recompute]")
    page.wait_for_selector("[data-testid=tier-run-status]")
    page.wait_for_selector("[data-testid=tier-run-status][data-status=done]", timeout=30_000)
    assert page.get_attribute("[data-testid=tier-run-progress]", "aria-valuenow") == "100"
    assert page.inner_text("[data-testid=tier-count-general_retain]") == "3"
    assert page.inner_text("[data-testid=tier-count-no_trade]") == "1"
    assert page.locator("[data-testid=tier-empty]").count() == 0
    page.wait_for_function("() => document.querySelector('#tier-chart canvas') !== null")
    assert TierRun.objects.get().requested_by == operator.username
    page.screenshot(path=str(ARTIFACTS / "tiers.png"), full_page=True)
