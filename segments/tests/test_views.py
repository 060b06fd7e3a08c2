"""客群 pages over HTTP: roles, branch scope, the builder's operations and errors, saving, and the detail page's
forms (snapshot, export, actions, archive) storing nothing on error."""

import json

import pytest
from django.urls import reverse

from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from segments.models import Segment, SegmentAction, SegmentExport, SegmentSnapshot
from segments.tests import scope_urls

pytestmark = pytest.mark.django_db

C45 = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C4", "C5"]}]}


@pytest.fixture
def people(advisor, other_branch_advisor):
    return {
        "bj_c4": CustomerFactory(advisor=advisor, name="北京积极", risk_level="C4", mobile="13912345678"),
        "bj_c2": CustomerFactory(advisor=advisor, name="北京稳健", risk_level="C2"),
        "sh_c5": CustomerFactory(advisor=other_branch_advisor, name="上海激进", risk_level="C5"),
    }


def _builder_post(client, rule, op="", **fields):
    data = {"rule": json.dumps(rule), "op": op, **fields}
    return client.post(reverse("segments:builder"), data)


def _segment(**kwargs):
    kwargs.setdefault("rule", C45)
    kwargs.setdefault("name", "高风险偏好")
    return Segment.objects.create(**kwargs)


# --- roles and scope -----------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["advisor", "compliance", "same_branch_advisor"])
def test_roles_without_segments_get_404_everywhere(client, request, role):
    client.force_login(request.getfixturevalue(role))
    segment = _segment()
    for url in (reverse("segments:list"), reverse("segments:create"), reverse("segments:rule_schema"),
                reverse("segments:detail", args=[segment.pk]), reverse("segments:edit", args=[segment.pk])):
        assert client.get(url).status_code == 404, url
    assert _builder_post(client, C45).status_code == 404


def test_bj_branch_manager_gets_404_on_every_url_of_a_shanghai_segment(client, branch_manager, other_branch_advisor,
                                                                       operator):
    """The same factories the project-wide scope test uses, checked here on the segments URLs alone."""
    from django.urls import get_resolver

    objs = {"customer": CustomerFactory(advisor=other_branch_advisor, name="上海专属客户甲"), "operator": operator}
    client.force_login(branch_manager)
    resolver = get_resolver()
    checked = 0
    for entry in resolver.url_patterns:
        if getattr(entry, "namespace", None) != "segments":
            continue
        for pattern in entry.url_patterns:
            converters = pattern.pattern.converters
            if not converters:
                continue
            # "code": a tag's rule in the builder (tests/test_scope.py makes the tag); the manager gets 404 by role
            kwargs = {k: scope_urls.OBJECT_KWARGS[k](objs) if k != "code" else "margin_intent" for k in converters}
            url = reverse(f"segments:{pattern.name}", kwargs=kwargs)
            response = client.get(url)
            if response.status_code == 405:
                response = client.post(url, {"name": "x", "kind": "tag_add", "tag": "margin_intent", "format": "csv"})
            assert response.status_code == 404, f"{url} answered {response.status_code}"
            checked += 1
    assert checked >= 10
    assert not SegmentSnapshot.objects.exists() and not SegmentExport.objects.filter(created_by=branch_manager).exists()


def test_list_counts_members_within_the_viewer_scope(client, operator, branch_manager, people):
    from segments.services import segment_rebuild

    firm = _segment(name="全公司高风险")
    sh_only = _segment(name="上海专属客群", branch=people["sh_c5"].branch)
    segment_rebuild(segment_id=firm.pk)
    client.force_login(operator)
    html = client.get(reverse("segments:list")).content.decode()
    assert "全公司高风险" in html and "上海专属客群" in html
    row = html.split(f'data-segment-id="{firm.pk}"')[1].split("</tr>")[0]
    assert 'data-testid="segment-count">2<' in row
    client.force_login(branch_manager)
    html = client.get(reverse("segments:list")).content.decode()
    assert "上海专属客群" not in html
    row = html.split(f'data-segment-id="{firm.pk}"')[1].split("</tr>")[0]
    assert 'data-testid="segment-count">1<' in row
    assert client.get(reverse("segments:detail", args=[sh_only.pk])).status_code == 404


def test_firm_wide_list_reads_the_stored_size_instead_of_counting_members(client, operator, people):
    """At firm scope the list shows Segment.member_count (written by the rebuild that changed the membership),
    so the page never counts millions of member rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from segments.services import segment_rebuild

    firm = _segment(name="全公司高风险")
    segment_rebuild(segment_id=firm.pk)
    client.force_login(operator)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(reverse("segments:list")).content.decode()
    row = html.split(f'data-segment-id="{firm.pk}"')[1].split("</tr>")[0]
    assert 'data-testid="segment-count">2<' in row
    assert not any("segments_segmentmember" in q["sql"] for q in queries.captured_queries)


def test_archived_filter(client, operator):
    _segment(name="旧客群", archived=True)
    _segment(name="新客群")
    client.force_login(operator)
    active = client.get(reverse("segments:list")).content.decode()
    archived = client.get(reverse("segments:list") + "?archived=1").content.decode()
    assert "新客群" in active and "旧客群" not in active
    assert "旧客群" in archived and "新客群" not in archived


def test_rule_schema_is_served(client, operator):
    client.force_login(operator)
    response = client.get(reverse("segments:rule_schema"))
    assert response.status_code == 200
    schema = response.json()
    assert "$schema" in schema or "type" in schema or "definitions" in schema or "$defs" in schema


# --- builder --------------------------------------------------------------------------------------

def test_builder_operations_edit_the_tree_and_preview_counts_in_scope(client, branch_manager, people):
    client.force_login(branch_manager)
    response = _builder_post(client, C45, op="add_condition|$")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-path="$.rules[1]"' in html and 'hx-swap-oob="true"' in html
    response = _builder_post(client, C45, op="add_group|$")
    assert 'data-path="$.rules[1]"' in response.content.decode() and 'data-testid="group-empty"' in response.content.decode()
    response = _builder_post(client, C45, op="toggle_not|$.rules[0]")
    rule = json.loads(response.content.decode().split('name="rule" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert rule["rules"][0]["not"] is True
    # C4/C5 within the BJ branch: only 北京积极 (上海激进 is outside the manager's scope)
    html = _builder_post(client, C45).content.decode()
    assert 'data-count="1"' in html and "北京积极" in html and "上海激进" not in html
    assert "139****5678" in html  # masked mobile only
    # the editor's posted values override the JSON: tick C2 as well
    html = _builder_post(client, C45, **{"f:$.rules[0]:_present": "1", "f:$.rules[0]:type": "attribute",
                                         "f:$.rules[0]:field": "risk_level", "f:$.rules[0]:op": "in",
                                         "f:$.rules[0]:value": ["C2", "C4", "C5"]}).content.decode()
    assert 'data-count="2"' in html
    html = _builder_post(client, C45, op="toggle_op|$").content.decode()
    assert "或 OR" in html
    html = _builder_post(client, {"op": "and", "rules": [C45, C45]}, op="remove|$.rules[1]").content.decode()
    assert 'data-path="$.rules[1]"' not in html


def test_a_new_condition_group_starts_empty_and_leaves_the_count_alone(client, operator, people):
    """+ 条件组 used to put 「风险等级 属于 C1」 in the new group, which (under AND) dropped the count to 0: the group
    now starts empty, counts for nothing until a condition is put in it, and is not saved empty."""
    client.force_login(operator)
    assert 'data-count="2"' in _builder_post(client, C45).content.decode()  # C4/C5 firm-wide
    html = _builder_post(client, C45, op="add_group|$").content.decode()
    tree = json.loads(html.split('name="rule" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert tree["rules"][1] == {"op": "or", "rules": []}
    assert 'data-testid="group-empty"' in html and 'data-count="2"' in html
    assert "风险等级 属于 C1" not in html and 'data-path="$.rules[1].rules[0]"' not in html
    # an error in a condition after the empty group still points at that condition as the page shows it
    bad = {"op": "and", "rules": [{"op": "or", "rules": []}, C45["rules"][0],
                                  {"type": "trades", "measure": "count", "op": "gte", "value": 1}]}
    html = _builder_post(client, bad).content.decode()
    assert 'data-testid="preview-error-path">$.rules[2].within_days<' in html
    # saved without the empty group
    response = client.post(reverse("segments:create"), {"name": "高风险", "rule": json.dumps(tree)})
    assert response.status_code == 302 and Segment.objects.get().rule == C45


def test_builder_shows_the_error_path_and_highlights_the_node(client, operator, people):
    client.force_login(operator)
    bad = {"op": "and", "rules": [C45["rules"][0], {"type": "trades", "measure": "count", "op": "gte", "value": 1}]}
    html = _builder_post(client, bad).content.decode()
    assert 'data-testid="preview-error-path">$.rules[1].within_days<' in html
    node = html.split('data-path="$.rules[1]"')[0].rsplit("<div", 1)[1]
    assert "border-danger" in node


def test_a_condition_added_by_another_area_survives_the_builder(client, operator):
    """The funnel's drop-outs segment carries a sign-up date condition the editor has no form for: editing the
    rest of the rule keeps it, shown read-only in words."""
    client.force_login(operator)
    signup = {"type": "signup_date", "op": "between", "value": ["2026-01-01", "2026-06-30"]}
    rule = {"op": "and", "rules": [C45["rules"][0], signup]}
    html = _builder_post(client, rule, **{"f:$.rules[1]:_present": "1", "f:$.rules[1]:type": "signup_date",
                                          "f:$.rules[0]:_present": "1", "f:$.rules[0]:type": "attribute",
                                          "f:$.rules[0]:field": "risk_level", "f:$.rules[0]:op": "in",
                                          "f:$.rules[0]:value": ["C5"]}).content.decode()
    kept = json.loads(html.split('name="rule" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert kept["rules"][1] == signup and kept["rules"][0]["value"] == ["C5"]
    assert "注册日期 介于 2026-01-01、2026-06-30" in html.split('data-testid="cond-readonly">')[1]
    # its type stays selected, so the next htmx round trip posts it back instead of the first type offered
    row = html.split('data-path="$.rules[1]"')[1].split('data-testid="cond-type"')[1].split("</select>")[0]
    assert '<option value="signup_date" selected>' in row


def test_changing_a_condition_type_starts_it_over(client, operator):
    client.force_login(operator)
    html = _builder_post(client, C45, **{"f:$.rules[0]:_present": "1",
                                         "f:$.rules[0]:type": "trades"}).content.decode()
    rule = json.loads(html.split('name="rule" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert rule["rules"][0]["type"] == "trades" and rule["rules"][0]["within_days"] == 90


def test_save_creates_and_invalid_rule_stores_nothing(client, operator, people):
    client.force_login(operator)
    bad = {"op": "and", "rules": [{"type": "tier", "op": "in", "value": []}]}
    response = client.post(reverse("segments:create"), {"name": "坏规则", "rule": json.dumps(bad)})
    assert response.status_code == 400
    assert "$.rules[0].value" in response.content.decode()
    assert not Segment.objects.exists()
    response = client.post(reverse("segments:create"), {"name": "", "rule": json.dumps(C45)})
    assert response.status_code == 400 and not Segment.objects.exists()
    response = client.post(reverse("segments:create"), {"name": "高风险", "description": "C4/C5",
                                                        "rule": json.dumps(C45)})
    segment = Segment.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("segments:detail", args=[segment.pk])
    assert segment.rule == C45 and segment.branch is None and segment.created_by == operator
    response = client.post(reverse("segments:edit", args=[segment.pk]),
                           {"name": "高风险改", "rule": json.dumps(C45), "f:$.rules[0]:_present": "1",
                            "f:$.rules[0]:type": "attribute", "f:$.rules[0]:field": "risk_level",
                            "f:$.rules[0]:op": "in", "f:$.rules[0]:value": ["C5"]})
    segment.refresh_from_db()
    assert response.status_code == 302 and segment.name == "高风险改"
    assert segment.rule["rules"][0]["value"] == ["C5"]


def test_branch_manager_segment_belongs_to_their_branch_and_firm_wide_is_read_only(client, branch_manager, people):
    client.force_login(branch_manager)
    client.post(reverse("segments:create"), {"name": "北京高风险", "rule": json.dumps(C45)})
    assert Segment.objects.get().branch.code == "BJ01"
    firm = _segment(name="全公司")
    assert client.get(reverse("segments:edit", args=[firm.pk])).status_code == 200
    response = client.post(reverse("segments:edit", args=[firm.pk]), {"name": "改名", "rule": json.dumps(C45)})
    assert response.status_code == 403
    firm.refresh_from_db()
    assert firm.name == "全公司"


# --- detail -----------------------------------------------------------------------------------------

def test_detail_shows_summary_members_masked_and_history(client, operator, branch_manager, people):
    from segments.services import segment_rebuild

    segment = _segment()
    segment_rebuild(segment_id=segment.pk)
    client.force_login(branch_manager)
    html = client.get(reverse("segments:detail", args=[segment.pk])).content.decode()
    assert "风险等级" in html and "C4" in html  # readable rule
    assert "北京积极" in html and "上海激进" not in html and "139****5678" in html
    assert html.count('data-testid="rebuild-row"') == 1
    client.force_login(operator)
    html = client.get(reverse("segments:detail", args=[segment.pk])).content.decode()
    assert "上海激进" in html


def test_the_rule_summary_names_products_tags_events_and_tiers_in_words(client, operator):
    from tagging.models import Tag

    tag = Tag.objects.get(code="high_net_worth")
    rule = {"op": "and", "rules": [
        {"type": "trades", "measure": "count", "op": "gte", "value": 2, "within_days": 180, "product_type": "fund"},
        {"type": "tag", "op": "has", "tag": "high_net_worth"},
        {"type": "events", "event_type": "app_login", "op": "gte", "value": 3, "within_days": 30},
        {"type": "tier", "op": "in", "value": ["important_value", "important_retain"]},
        {"type": "tier_change", "direction": "down", "within_days": 30, "to": ["important_retain"]},
        {"type": "attribute", "field": "lifecycle_stage", "op": "in", "value": ["retain"]},
        {"type": "attribute", "field": "utm_source", "op": "eq", "value": "douyin"}]}
    segment = _segment(rule=rule)
    client.force_login(operator)
    html = client.get(reverse("segments:detail", args=[segment.pk])).content.decode()
    summary = html.split('data-testid="rule-summary">')[1].split("</p>")[0]
    for words in ("近 180 天基金类交易笔数 大于等于 2", f"有标签「{tag.name}」", "近 30 天「登录 App」次数 大于等于 3",
                  "价值分层 属于 重要价值、重要挽留", "分层降级至 重要挽留", "生命周期 属于 留存",
                  "推广来源（utm_source） 等于 douyin"):
        assert words in summary, (words, summary)
    for code in ("fund", "high_net_worth", "app_login", "important_value", "important_retain", "retain "):
        assert code not in summary, (code, summary)
    # the builder's field picker names the UTM fields in words too
    html = _builder_post(client, rule).content.decode()
    assert ">推广来源（utm_source）<" in html and ">推广活动（utm_campaign）<" in html


def test_recompute_now_updates_the_page_when_the_rebuild_finishes(client, operator, people):
    """立即重算 used to say 「完成后刷新页面」: the page now shows that it is recomputing, polls a status partial, and
    reloads itself (HX-Redirect) with the new count once the rebuild is recorded."""
    from segments.services import segment_rebuild

    segment = _segment()
    segment_rebuild(segment_id=segment.pk)
    client.force_login(operator)
    response = client.post(reverse("segments:rebuild", args=[segment.pk]))
    assert response.status_code == 302 and "?rebuilding=" in response["Location"]
    page = client.get(response["Location"]).content.decode()
    status = page.split('data-testid="rebuild-status"')[1].split("</div>")[0]
    assert "正在重算" in status and "hx-get=" in status and 'hx-trigger="load delay:1s"' in status
    poll_url = status.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    polled = client.get(poll_url, HTTP_HX_REQUEST="true")  # the worker has not run it yet
    assert polled.status_code == 200 and "正在重算" in polled.content.decode() and "HX-Redirect" not in polled
    people["bj_c2"].risk_level = "C4"
    people["bj_c2"].save()
    segment_rebuild(segment_id=segment.pk)  # what the worker does
    done = client.get(poll_url, HTTP_HX_REQUEST="true")
    assert done["HX-Redirect"] == reverse("segments:detail", args=[segment.pk])
    page = client.get(done["HX-Redirect"]).content.decode()
    assert "重算完成" in page and "全公司 3 人" in page and 'data-testid="rebuild-status"' not in page


def test_snapshot_diff_export_action_errors_store_nothing(client, operator, people):
    segment = _segment()
    client.force_login(operator)
    url = reverse("segments:detail", args=[segment.pk])
    assert client.post(reverse("segments:snapshot_create", args=[segment.pk]), {"name": ""}).status_code == 400
    assert client.post(reverse("segments:export_create", args=[segment.pk]), {"format": "pdf"}).status_code == 400
    response = client.post(reverse("segments:action_create", args=[segment.pk]), {"kind": "tag_add", "tag": ""})
    assert response.status_code == 400
    response = client.post(reverse("segments:action_create", args=[segment.pk]),
                           {"kind": "tasks", "title": "回访", "due_days": "99"})
    assert response.status_code == 400
    assert not SegmentSnapshot.objects.exists() and not SegmentExport.objects.exists()
    assert not SegmentAction.objects.exists()
    response = client.post(reverse("segments:snapshot_create", args=[segment.pk]), {"name": "双十一受众"})
    assert response.status_code == 302 and response["Location"] == url
    snapshot = SegmentSnapshot.objects.get()
    assert snapshot.size == 2
    people["bj_c2"].risk_level = "C5"
    people["bj_c2"].save()
    html = client.get(reverse("segments:diff", args=[segment.pk]) + f"?left={snapshot.pk}&right=live").content.decode()
    assert 'data-testid="diff-joined-count">1<' in html and "北京稳健" in html
    assert 'data-testid="diff-left-count">0<' in html
    assert client.get(reverse("segments:diff", args=[segment.pk]) + "?left=999999").status_code == 404


def test_archive(client, operator):
    segment = _segment()
    client.force_login(operator)
    response = client.post(reverse("segments:archive", args=[segment.pk]))
    assert response.status_code == 302
    segment.refresh_from_db()
    assert segment.archived
    assert AuditLog.objects.filter(action="segment.archive", target_id=str(segment.pk)).exists()


def test_export_status_and_download_are_the_exporters_own(client, operator, hq_manager):
    segment = _segment()
    export = SegmentExport.objects.create(segment=segment, created_by=operator)
    client.force_login(hq_manager)
    assert client.get(reverse("segments:export_status", args=[export.pk])).status_code == 404
    assert client.get(reverse("segments:export_download", args=[export.pk])).status_code == 404
    client.force_login(operator)
    response = client.get(reverse("segments:export_status", args=[export.pk]))
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.content.decode()
    assert client.get(reverse("segments:export_download", args=[export.pk])).status_code == 404  # not done yet


# --- a fixed number of queries per page, whatever the number of rows -------------------------------------

def _segments_with_history(n, branch=None):
    from datetime import timedelta

    from django.utils import timezone

    from segments.models import SegmentRebuild, SegmentSizeDaily

    today = timezone.localdate()
    made = []
    for i in range(n):
        segment = _segment(name=f"客群{i}", branch=branch, member_count=i, rebuilt_at=timezone.now())
        SegmentRebuild.objects.create(segment=segment, status="done", size=i, duration_ms=5)
        for days in range(3):
            SegmentSizeDaily.objects.create(segment=segment, day=today - timedelta(days=days), size=i + days)
        made.append(segment)
    return made


def test_list_page_queries_do_not_grow_with_the_segments(client, operator, django_assert_max_num_queries):
    _segments_with_history(2)
    client.force_login(operator)
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("segments:list"))
    _segments_with_history(8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = client.get(reverse("segments:list")).content.decode()
    assert html.count('data-testid="segment-row"') == 10
    row = html.split('data-testid="segment-row"')[1]
    assert 'data-values="[' in row and "5 ms" in row  # sparkline and the latest rebuild's duration


def test_detail_page_queries_do_not_grow_with_exports_actions_and_members(client, operator, people,
                                                                          django_assert_max_num_queries):
    from segments.services import segment_rebuild

    def grow(segment, n):
        for i in range(n):
            snapshot = SegmentSnapshot.objects.create(segment=segment, name=f"快照{i}", rule=C45, created_by=operator)
            SegmentExport.objects.create(segment=segment, snapshot=snapshot, created_by=operator)
            SegmentAction.objects.create(segment=segment, kind="tag_add", params={"tag": "margin_intent"},
                                         created_by=operator)
            CustomerFactory(advisor=people["bj_c4"].advisor, risk_level="C5")
        segment_rebuild(segment_id=segment.pk)

    segment = _segment()
    grow(segment, 1)
    client.force_login(operator)
    url = reverse("segments:detail", args=[segment.pk])
    with django_assert_max_num_queries(25) as few:
        client.get(url)
    grow(segment, 6)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = client.get(url).content.decode()
    assert html.count('data-testid="export-row"') == 7 and "快照5" in html
    assert html.count('data-testid="action-row"') == 7 and html.count('data-testid="member-row"') == 9


# --- 立即重算 ------------------------------------------------------------------------------------------

def test_rebuild_button_queues_a_rebuild_and_audits_it(client, operator, django_capture_on_commit_callbacks):
    segment = _segment()
    client.force_login(operator)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(reverse("segments:rebuild", args=[segment.pk]))
    assert response.status_code == 302 and len(queued) == 1
    assert AuditLog.objects.filter(action="segment.rebuild", actor=operator, target_id=str(segment.pk)).exists()

    archived = _segment(name="旧客群", archived=True)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(reverse("segments:rebuild", args=[archived.pk]), follow=True)
    assert not queued and "已归档的客群不再重算" in response.content.decode()
    assert not AuditLog.objects.filter(action="segment.rebuild", target_id=str(archived.pk)).exists()


def test_builder_preview_refuses_a_nested_segment_outside_the_viewers_branch(client, branch_manager, people):
    sh_only = _segment(name="上海专属客群", branch=people["sh_c5"].branch)
    client.force_login(branch_manager)
    rule = {"op": "and", "rules": [{"type": "segment", "op": "in", "segment": sh_only.pk}]}
    html = _builder_post(client, rule).content.decode()
    assert 'data-testid="preview-error-path">$.rules[0].segment<' in html and "data-count=" not in html
