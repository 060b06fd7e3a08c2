"""Stored XSS, in Chromium: markup stored in every free-text field that a chart, table or tooltip shows (a customer's
channel and name, tag, segment, journey, message template and group names, a task title) is shown as text on every
page that shows it, chart tooltips included, and never runs.

The pages run under the Content-Security-Policy, which would block an injected handler; but the policy is only the
second line: the test also fails when the policy merely *blocked* something (a ``securitypolicyviolation`` event),
so the escaping itself is what it proves.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from dashboards.analyses.refresh import analyses_refresh
from groups.models import GroupDailyStat
from groups.tests.factories import make_group

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMG = '<img src=x onerror="window.__xss=1">'
SVG = '"><svg onload=window.__xss=1>'

WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ""}`);
});
"""

# every chart on the page: show the tooltip of each data point (at most 30 a series), as hovering it would
SHOW_ALL_TOOLTIPS = """async () => {
  let shown = 0;
  for (const el of document.querySelectorAll("[_echarts_instance_]")) {
    const chart = window.echarts && echarts.getInstanceByDom(el);
    if (!chart) continue;
    (chart.getOption().series || []).forEach((series, seriesIndex) => {
      const n = Math.min((series.data || []).length, 30);
      for (let dataIndex = 0; dataIndex < n; dataIndex++) {
        chart.dispatchAction({ type: "showTip", seriesIndex, dataIndex });
        shown++;
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  return shown;
}"""


@pytest.fixture
def payloads(advisor, operator, compliance):
    """Markup in every free-text field shown by a chart, a table or a tooltip, stored through factories and services."""
    from segments.services import segment_create, segment_rebuild
    from sop.engine import enroll_queryset
    from sop.services import journey_create, journey_publish
    from sop.templates_lint import template_review, template_save
    from sop.tests.test_engine import NOON, drain
    from tagging.models import Tag, TagCategory
    from tagging.services import customer_tag_add

    assessed = NOON.date() - timedelta(days=30)
    img = CustomerFactory(advisor=advisor, name="甲" + IMG, channel=IMG, mobile="13900000001", risk_assessed_at=assessed)
    svg = CustomerFactory(advisor=advisor, name="乙" + SVG, channel=SVG, mobile="13900000002", risk_assessed_at=assessed,
                          total_assets=5_000_000)
    CustomerFactory(advisor=advisor, channel="应用商店", total_assets=20_000)  # a third point on the quadrant
    analyses_refresh(full=True)

    category, _ = TagCategory.objects.get_or_create(code="xss_test", defaults={"name": "测试" + SVG, "kind": "behaviour"})
    img_tag = Tag.objects.create(code="xss_img", name=IMG, category=category)
    svg_tag = Tag.objects.create(code="xss_svg", name=SVG, category=category)
    customer_tag_add(customer=img, tag=img_tag, source="manual", actor=operator)
    customer_tag_add(customer=svg, tag=svg_tag, source="manual", actor=operator)

    segments = [segment_create(actor=operator, name=name, rule={"op": "and", "rules": [
        {"type": "tag", "op": "has", "tag": tag.code}]}) for name, tag in ((IMG, img_tag), (SVG, svg_tag))]
    for segment in segments:
        segment_rebuild(segment_id=segment.pk)

    version = template_save(actor=operator, template=None, name=IMG, channel="wecom", body="{name}您好，有问题随时找我。")
    template = template_review(actor=compliance, version=version, approve=True).template
    journey = journey_create(actor=operator, name=SVG, definition={
        "trigger": {"type": "manual"}, "start": "call", "steps": [
            {"id": "call", "type": "task", "title": "回访" + IMG, "due_hours": 24, "executor": "advisor", "next": "hello"},
            {"id": "hello", "type": "wecom_message", "template": template.pk}]})
    journey_publish(actor=operator, journey=journey)
    journey.refresh_from_db()
    enroll_queryset(version=journey.live_version, customers=Customer.objects.filter(pk__in=[img.pk, svg.pk]),
                    trigger_key="xss", now=NOON)
    while drain(NOON):
        pass

    today = timezone.localdate()
    groups = [make_group(advisor=advisor, name=name, purpose="fund", audience=segment, members=[img])
              for name, segment in ((IMG, segments[0]), (SVG, segments[1]))]
    GroupDailyStat.objects.bulk_create([
        GroupDailyStat(group=groups[0], day=today - timedelta(days=d), members=10 + d, clients=8, joins=d % 3, leaves=d % 2)
        for d in range(1, 8)])
    return {"img": img, "svg": svg, "segments": segments, "journey": journey, "template": template, "groups": groups}


class Watch:
    """Console errors and page errors of the whole test; violations and window.__xss are read per page."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.add_init_script(WATCH)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        # failed loads by URL (the console's "Failed to load resource" names none); the admin has no icon link
        page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
                and self.errors.append(f"{page.url}: {r.status} {r.url}"))

    def _console(self, message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"{self.page.url}: {message.text}")

    def visit(self, url: str, *, expect: str | None = None) -> None:
        page = self.page
        page.goto(url)
        page.wait_for_load_state("load")
        if expect:
            page.get_by_text(expect).filter(visible=True).first.wait_for()  # the payload is shown, as text
        page.evaluate(SHOW_ALL_TOOLTIPS)
        page.wait_for_timeout(300)  # let injected images fail and handlers (if any) run
        self.check(url)

    def check(self, where: str) -> None:
        state = self.page.evaluate("() => ({ xss: window.__xss, violations: window.__cspViolations })")
        assert state["xss"] is None, f"{where}: the stored payload ran"
        assert state["violations"] == [], f"{where}: the CSP had to block something: {state['violations']}"
        assert self.errors == [], self.errors


def test_stored_markup_is_text_everywhere_and_nothing_trips_the_csp(page, login, payloads, advisor, hq_manager, operator,
                                                                    admin_user):
    watch = Watch(page)
    img, svg = payloads["img"], payloads["svg"]

    login(hq_manager)
    # 分析 → 渠道评估: hover each point of the quadrant; its tooltip (HTML) shows the channel as text
    page.goto("/dashboards/analyses/channels/")
    page.wait_for_selector("#quadrant-chart[data-rendered='1'] canvas")
    points = page.evaluate("""() => {
      const chart = echarts.getInstanceByDom(document.getElementById("quadrant-chart"));
      return chart.getOption().series[0].data.map((d) => chart.convertToPixel({ seriesIndex: 0 }, d.value));
    }""")
    assert len(points) == 3
    box = page.locator("#quadrant-chart").bounding_box()
    tooltips = []
    for x, y in points:
        text = ""
        for nudge in range(10):  # under load the tooltip can take a moment: hover again until it shows
            page.mouse.move(box["x"] + x + nudge % 2, box["y"] + y)
            page.wait_for_timeout(300)
            text = page.locator("#quadrant-chart").inner_text()
            if text.strip():
                break
        tooltips.append(text)
    watch.check("channels, hovering the points")
    assert any(IMG in t for t in tooltips) and any(SVG in t for t in tooltips), tooltips
    watch.visit("/dashboards/analyses/channels/", expect=IMG)
    watch.visit("/dashboards/")
    watch.visit("/customers/", expect="甲" + IMG)
    watch.visit(f"/customers/c/{img.external_id}/", expect="甲" + IMG)
    watch.visit(f"/customers/c/{svg.external_id}/", expect="乙" + SVG)

    page.context.clear_cookies()
    login(operator)
    watch.visit("/segments/", expect=IMG)
    for segment in payloads["segments"]:
        watch.visit(f"/segments/{segment.pk}/", expect=segment.name)
    watch.visit("/segments/new/")
    watch.visit("/sop/", expect=SVG)
    watch.visit(f"/sop/journeys/{payloads['journey'].pk}/results/", expect=IMG)
    watch.visit(f"/sop/journeys/{payloads['journey'].pk}/")
    watch.visit("/sop/templates/", expect=IMG)
    watch.visit("/tags/", expect=IMG)
    watch.visit("/groups/", expect=SVG)

    page.context.clear_cookies()
    login(admin_user)
    watch.visit(f"/groups/{payloads['groups'][0].pk}/", expect=IMG)
    watch.visit(f"/customers/c/{img.external_id}/", expect="甲" + IMG)
    watch.visit("/dashboards/analyses/sop/")
    watch.visit("/dashboards/analyses/advisors/")
    watch.visit("/dashboards/analyses/funnel/")

    page.context.clear_cookies()
    login(advisor)  # the clients' advisor: the journey's task and WeCom message are in the inbox and on the 360° page
    watch.visit("/", expect="回访" + IMG)
    watch.visit("/customers/tasks/", expect="回访" + IMG)
    watch.visit(f"/customers/c/{svg.external_id}/", expect="回访" + IMG)


def test_api_docs_and_admin_work_under_the_csp(page, login, admin_user):
    """Swagger UI (its start-up script is a separate file, SpectacularSwaggerSplitView) and the Django admin."""
    watch = Watch(page)
    page.goto("/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .information-container .title")
    page.wait_for_selector(".opblock-tag-section")  # the schema was fetched and drawn
    watch.check("/api/v1/docs/")
    login(admin_user)
    watch.visit("/admin/")
    watch.visit("/admin/core/user/")  # staff are read-only here (managed at 用户与权限)
    from core.models import Branch

    Branch.objects.get_or_create(code="BJ01", defaults={"name": "北京营业部"})
    watch.visit("/admin/core/branch/")
    page.check("#action-toggle")  # the admin's own script ticks every row
    assert page.locator("input.action-select:checked").count() == page.locator("input.action-select").count() > 0
    watch.check("/admin/core/branch/ select all")
    watch.visit("/admin/core/branch/add/")
