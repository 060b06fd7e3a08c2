"""A branch manager opens the opening funnel in Chromium, sees the chart, and turns a step's drop-outs into a
segment with one click (then lands on the segment, from where a recall SOP is one bulk action away)."""

from datetime import timedelta

import pytest

from core.models import Branch
from customers.tests.factories import CustomerFactory
from dashboards.analyses.common import current_month
from dashboards.analyses.refresh import analyses_refresh
from dashboards.tests.test_live import counters  # noqa: F401
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


def test_charts_without_data_say_so(page, login, hq_manager, counters):  # noqa: F811 - no counters of earlier tests
    """A dashboard with nothing in it shows, in each chart's place, what would fill it, not a blank card."""
    from customers.models import Touch, Trade

    Trade.objects.all().delete(), Touch.objects.all().delete()  # nor rows a worker committed after their flush
    page.route("**/dashboards/stream/**", lambda route: route.abort())  # the initial render is what is looked at
    login(hq_manager)
    page.goto("/dashboards/")
    for name, words in (("trend", "这段时间还没有交易"), ("tiers", "还没有分层结果"), ("sop", "这段时间没有 SOP 触达")):
        card = page.locator(f"[data-testid=chart-{name}]").locator("xpath=..")
        note = card.locator(".chart-empty")
        note.wait_for()
        assert words in note.inner_text() and not page.locator(f"[data-testid=chart-{name}]").is_visible()
    analyses_refresh(full=True)
    page.goto("/dashboards/analyses/channels/")
    assert "所选期间没有注册的客户" in page.locator("[data-testid=empty]").inner_text()


def test_channel_quadrant_labels_do_not_overlap(page, login, hq_manager):
    """Channels with similar numbers used to print their names on top of each other in the quadrant chart."""
    bj = Branch.objects.get_or_create(code="BJ01", defaults={"name": "北京营业部"})[0]
    for i, name in enumerate(("应用商店", "抖音信息流", "微信公众号", "今日头条", "线下活动", "同花顺合作")):
        for _ in range(3 + i % 2):
            CustomerFactory(branch=bj, funnel_stage="opened", channel=name, total_assets=100_000,
                            opened_at=current_month() + timedelta(days=1))
    analyses_refresh(full=True)
    login(hq_manager)
    page.goto("/dashboards/analyses/channels/")
    page.wait_for_selector("#quadrant-chart[data-rendered='1']")
    page.wait_for_timeout(800)  # the label layout runs after the first frame
    boxes = page.evaluate("""() => {
        const chart = echarts.getInstanceByDom(document.getElementById('quadrant-chart'));
        const series = chart.getModel().getSeriesByIndex(0), data = series.getData(), out = [];
        for (let i = 0; i < data.count(); i++) {
            const item = data.getItemGraphicEl(i);  // a symbol: a group whose path carries the label
            const label = item && (item.getTextContent() || (item.childAt(0) && item.childAt(0).getTextContent()));
            if (!label || label.ignore || label.invisible || label.style.opacity === 0) continue;
            const rect = label.getBoundingRect().clone();
            rect.applyTransform(label.getComputedTransform());
            out.push([rect.x, rect.y, rect.width, rect.height]);
        }
        return out; }""")
    assert len(boxes) >= 2  # names are shown, not all hidden
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            overlap = min(x1 + w1, x2 + w2) - max(x1, x2) > 1 and min(y1 + h1, y2 + h2) - max(y1, y2) > 1
            assert not overlap, boxes
