"""A branch manager opens the opening funnel in Chromium, sees the chart, and turns a step's drop-outs into a
segment with one click (then lands on the segment, from where a recall SOP is one bulk action away)."""

from datetime import timedelta

import pytest

from core.models import Branch
from customers.tests.factories import CustomerFactory
from dashboards.analyses.common import current_month
from dashboards.analyses.refresh import analyses_refresh
from segments.models import Segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_funnel_page_turns_dropouts_into_a_segment(page, login, branch_manager):
    bj = Branch.objects.get(code="BJ01")
    opened = current_month() + timedelta(days=1)
    for stage in ("id_uploaded", "password_set", "password_set", "video_verified", "opened", "funded"):
        CustomerFactory(branch=bj, funnel_stage=stage, channel="应用商店",
                        opened_at=opened if stage in ("opened", "funded") else None)
    analyses_refresh(full=True)

    login(branch_manager)
    page.goto("/dashboards/analyses/funnel/")
    page.wait_for_selector("#funnel-chart[data-rendered='1']")
    assert page.locator("[data-testid=step-password_set] [data-testid=dropouts]").inner_text() == "2"
    page.click("[data-testid=dropouts-password_set]")
    page.wait_for_selector("[data-testid=segment-title]")
    segment = Segment.objects.get()
    assert page.url.endswith(f"/segments/{segment.pk}/")
    assert "设置密码→视频见证" in page.locator("[data-testid=segment-title]").inner_text()
    assert "已生成客群" in page.content()
    assert segment.branch_id == bj.pk and segment.rule["rules"][0]["value"] == "password_set"
