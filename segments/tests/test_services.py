"""Saved segments: create/update/archive, rebuild diffs, nesting, snapshots, diffs, previews, trends."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.http import Http404
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers.tests.factories import CustomerFactory
from segments.models import Segment, SegmentMember, SegmentMemberChange, SegmentRebuild, SegmentSizeDaily
from segments.rules import RuleError
from segments.selectors import (
    rule_preview,
    segment_diff,
    segment_get_for_user,
    segment_members,
    segment_size_trend,
    segments_visible_to,
    snapshot_members,
)
from segments.services import (
    segment_archive,
    segment_create,
    segment_rebuild,
    segment_update,
    segments_rebuild_all,
    segments_rebuild_order,
    snapshot_create,
)
from tagging.models import CustomerTier

pytestmark = pytest.mark.django_db

RICH = {"op": "and", "rules": [{"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]}
C5 = {"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in", "value": ["C5"]}]}


def members(segment):
    return set(SegmentMember.objects.filter(segment=segment).values_list("customer_id", flat=True))


@pytest.fixture
def people(advisor, other_branch_advisor):
    """Two rich clients in Beijing, one in Shanghai, one poor one in Beijing."""
    return {
        "bj_rich": CustomerFactory(advisor=advisor, total_assets=Decimal("2000000"), risk_level="C5"),
        "bj_rich2": CustomerFactory(advisor=advisor, total_assets=Decimal("1500000")),
        "sh_rich": CustomerFactory(advisor=other_branch_advisor, total_assets=Decimal("3000000"), risk_level="C5"),
        "bj_poor": CustomerFactory(advisor=advisor, total_assets=Decimal("1000")),
    }


def test_rebuild_stores_joiners_and_leavers_as_diffs(operator, people):
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    assert AuditLog.objects.filter(action="segment.create", target_id=str(segment.pk), actor=operator).exists()
    first = segment_rebuild(segment_id=segment.pk, requested_by="test")
    assert (first.status, first.added, first.removed, first.size) == ("done", 3, 0, 3)
    assert first.duration_ms is not None and first.finished_at is not None
    assert members(segment) == {people["bj_rich"].pk, people["bj_rich2"].pk, people["sh_rich"].pk}
    assert SegmentMemberChange.objects.filter(rebuild=first, action="joined").count() == 3

    people["bj_rich2"].total_assets = Decimal("10")
    people["bj_rich2"].save()
    people["bj_poor"].total_assets = Decimal("5000000")
    people["bj_poor"].save()
    second = segment_rebuild(segment_id=segment.pk)
    assert (second.added, second.removed, second.size) == (1, 1, 3)
    changes = set(SegmentMemberChange.objects.filter(rebuild=second).values_list("customer_id", "action"))
    assert changes == {(people["bj_poor"].pk, "joined"), (people["bj_rich2"].pk, "left")}

    third = segment_rebuild(segment_id=segment.pk)  # nothing changed: nothing written
    assert (third.added, third.removed, third.size) == (0, 0, 3)
    assert not SegmentMemberChange.objects.filter(rebuild=third).exists()

    segment.refresh_from_db()
    assert segment.member_count == 3 and segment.rebuilt_at is not None
    daily = SegmentSizeDaily.objects.get(segment=segment, branch=None)
    assert (daily.day, daily.size) == (timezone.localdate(), 3)  # one row a day, upserted
    assert segment_size_trend(segment, principal=operator) == [(timezone.localdate(), 3)]
    by_branch = dict(SegmentSizeDaily.objects.filter(segment=segment, branch__isnull=False)
                     .values_list("branch__code", "size"))
    assert by_branch == {"BJ01": 2, "SH01": 1}


def test_size_trend_covers_the_requested_days(operator, people):
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    today = timezone.localdate()
    for back, size in ((100, 1), (20, 2), (1, 5)):
        SegmentSizeDaily.objects.create(segment=segment, day=today - timedelta(days=back), size=size)
    assert segment_size_trend(segment, days=30, principal=operator) == [(today - timedelta(days=20), 2),
                                                                         (today - timedelta(days=1), 5)]


def test_create_and_update_queue_a_rebuild_on_commit(operator, people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        segment = segment_create(actor=operator, name="高净值", rule=RICH)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        segment_update(actor=operator, segment=segment, name="高净值客户")  # no new rule: no rebuild
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        segment_update(actor=operator, segment=segment, rule=C5)
    assert len(callbacks) == 1
    segment.refresh_from_db()
    assert (segment.name, segment.rule) == ("高净值客户", C5)
    assert AuditLog.objects.filter(action="segment.update", target_id=str(segment.pk)).count() == 2


def test_bad_input_stores_nothing(operator):
    bad = {"op": "and", "rules": [{"type": "tier", "op": "in", "value": []}]}
    with pytest.raises(RuleError) as err:
        segment_create(actor=operator, name="坏规则", rule=bad)
    assert err.value.path == "$.rules[0].value"
    with pytest.raises(ApplicationError) as err:
        segment_create(actor=operator, name="  ", rule=RICH)
    assert err.value.details[0]["field"] == "name"
    assert not Segment.objects.exists() and not AuditLog.objects.filter(action="segment.create").exists()


def test_nested_segment_joins_stored_membership_not_its_rule(operator, people):
    inner = segment_create(actor=operator, name="激进型", rule=C5)
    segment_rebuild(segment_id=inner.pk)
    outer = segment_create(actor=operator, name="激进型中的北京客户", rule={"op": "and", "rules": [
        {"type": "segment", "op": "in", "segment": inner.pk},
        {"type": "attribute", "field": "branch", "op": "eq", "value": "BJ01"}]})
    segment_rebuild(segment_id=outer.pk)
    assert members(outer) == {people["bj_rich"].pk}

    segment_update(actor=operator, segment=inner, rule=RICH)  # the inner RULE changes ...
    segment_rebuild(segment_id=outer.pk)
    assert members(outer) == {people["bj_rich"].pk}  # ... but the outer reads stored membership
    segment_rebuild(segment_id=inner.pk)
    segment_rebuild(segment_id=outer.pk)
    assert members(outer) == {people["bj_rich"].pk, people["bj_rich2"].pk}


def test_nesting_cycles_are_refused_with_the_path_of_the_node(operator, people):
    a = segment_create(actor=operator, name="A", rule=RICH)
    b = segment_create(actor=operator, name="B", rule={"op": "and", "rules": [
        {"type": "segment", "op": "in", "segment": a.pk}]})
    c = segment_create(actor=operator, name="C", rule={"op": "or", "rules": [
        C5, {"type": "segment", "op": "not_in", "segment": b.pk}]})
    with pytest.raises(RuleError) as err:
        segment_update(actor=operator, segment=a, rule={"op": "and", "rules": [
            RICH, {"type": "segment", "op": "in", "segment": c.pk}]})
    assert err.value.path == "$.rules[1].segment"
    assert "循环" in err.value.message and "A → C → B → A" in err.value.message
    with pytest.raises(RuleError) as err:
        segment_update(actor=operator, segment=a, rule={"op": "and", "rules": [
            {"type": "segment", "op": "in", "segment": a.pk}]})
    assert err.value.path == "$.rules[0].segment"
    a.refresh_from_db()
    assert a.rule == RICH


def test_archive_is_refused_while_an_active_segment_nests_it(operator, people):
    inner = segment_create(actor=operator, name="内层", rule=C5)
    outer = segment_create(actor=operator, name="外层", rule={"op": "and", "rules": [
        {"type": "segment", "op": "in", "segment": inner.pk}]})
    with pytest.raises(ApplicationError) as err:
        segment_archive(actor=operator, segment=inner)
    assert err.value.code == "segment_in_use" and "外层" in err.value.message
    segment_archive(actor=operator, segment=outer)
    segment_archive(actor=operator, segment=inner)
    inner.refresh_from_db()
    assert inner.archived
    assert AuditLog.objects.filter(action="segment.archive").count() == 2
    with pytest.raises(RuleError) as err:  # an archived segment can no longer be nested
        segment_create(actor=operator, name="新", rule={"op": "and", "rules": [
            {"type": "segment", "op": "in", "segment": inner.pk}]})
    assert err.value.path == "$.rules[0].segment"


def test_rebuild_all_rebuilds_nested_segments_first(operator, people):
    outer = segment_create(actor=operator, name="外层（先建）", rule=RICH)
    inner = segment_create(actor=operator, name="内层（后建）", rule=C5)
    segment_update(actor=operator, segment=outer, rule={"op": "and", "rules": [
        {"type": "segment", "op": "in", "segment": inner.pk}]})
    archived = segment_create(actor=operator, name="已归档", rule=RICH)
    segment_archive(actor=operator, segment=archived)
    assert segments_rebuild_order() == [inner.pk, outer.pk]
    results = segments_rebuild_all()
    assert results == {inner.pk: "done", outer.pk: "done"}
    # one pass is enough: the outer saw the inner's fresh membership
    assert members(outer) == members(inner) == {people["bj_rich"].pk, people["sh_rich"].pk}
    assert not SegmentRebuild.objects.filter(segment=archived).exists()


def test_who_sees_which_segment(operator, branch_manager, other_branch_manager, hq_manager, advisor, compliance, people):
    firm = segment_create(actor=operator, name="全公司", rule=RICH)
    mine = segment_create(actor=branch_manager, name="北京", rule=RICH, branch=None)
    theirs = segment_create(actor=other_branch_manager, name="上海", rule=RICH)
    assert (mine.branch.code, theirs.branch.code, firm.branch) == ("BJ01", "SH01", None)
    assert set(segments_visible_to(branch_manager)) == {firm, mine}
    assert set(segments_visible_to(hq_manager)) == set(segments_visible_to(operator)) == {firm, mine, theirs}
    assert not segments_visible_to(advisor).exists() and not segments_visible_to(compliance).exists()
    with pytest.raises(Http404):
        segment_get_for_user(branch_manager, theirs.pk)
    with pytest.raises(ApplicationError) as err:  # firm-wide segments are read-only for a branch manager
        segment_update(actor=branch_manager, segment=firm, name="改名")
    assert err.value.status_code == 403
    with pytest.raises(Http404):
        segment_update(actor=branch_manager, segment=theirs, name="改名")
    with pytest.raises(ApplicationError):
        segment_create(actor=advisor, name="投顾不能建", rule=RICH)
    with pytest.raises(RuleError) as err:  # nesting a segment one cannot see
        segment_create(actor=branch_manager, name="偷看", rule={"op": "and", "rules": [
            {"type": "segment", "op": "in", "segment": theirs.pk}]})
    assert err.value.path == "$.rules[0].segment"


def test_members_and_preview_respect_the_viewers_scope(operator, branch_manager, people):
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    segment_rebuild(segment_id=segment.pk)
    assert set(segment_members(segment, principal=operator)) == {people["bj_rich"], people["bj_rich2"], people["sh_rich"]}
    assert set(segment_members(segment, principal=branch_manager)) == {people["bj_rich"], people["bj_rich2"]}

    CustomerTier.objects.create(customer=people["bj_rich"], code="important_value", as_of=timezone.localdate())
    preview = rule_preview(RICH, principal=branch_manager, sample_size=1)
    assert preview["count"] == 2
    assert preview["sample"] == [people["bj_rich"]]  # largest assets first
    assert preview["by_branch"] == [{"code": "BJ01", "name": "BJ01 营业部", "count": 2}]
    assert preview["by_tier"] == [{"code": "important_value", "label": "重要价值", "count": 1},
                                  {"code": "none", "label": "未分层", "count": 1}]
    everyone = rule_preview(RICH, principal=operator)
    assert everyone["count"] == 3 and {b["code"] for b in everyone["by_branch"]} == {"BJ01", "SH01"}
    with pytest.raises(RuleError):
        rule_preview({"op": "and", "rules": [{"type": "nope"}]}, principal=operator)


def test_preview_is_a_fixed_number_of_queries(operator, people):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        rule_preview(RICH, principal=operator, sample_size=5)
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert len([s for s in sqls if "COUNT(" in s and "GROUP BY" not in s]) == 1  # the count: one query
    assert len([s for s in sqls if "GROUP BY" in s]) == 2  # tiers and branches grouped in SQL
    assert len(sqls) <= 5  # + the sample + the tier labels, whatever the number of customers


def test_snapshots_freeze_members_and_diff_against_live_and_each_other(operator, branch_manager, people):
    segment = segment_create(actor=operator, name="高净值", rule=RICH)
    first = snapshot_create(actor=operator, segment=segment, name="三月活动")
    assert first.size == 3 and first.rule == RICH
    assert AuditLog.objects.filter(action="segment.snapshot", target_id=str(segment.pk)).exists()

    people["bj_rich2"].total_assets = Decimal("10")
    people["bj_rich2"].save()
    people["bj_poor"].total_assets = Decimal("5000000")
    people["bj_poor"].save()
    CustomerFactory(advisor=people["sh_rich"].advisor, total_assets=Decimal("9000000"), name="上海新贵")

    live = segment_diff(principal=operator, segment=segment, left=first)  # snapshot → live rule
    assert set(live["joined"]) == {people["bj_poor"]} | set(live["joined"].filter(name="上海新贵"))
    assert live["joined_count"] == 2
    assert set(live["left"]) == {people["bj_rich2"]} and live["left_count"] == 1

    scoped = segment_diff(principal=branch_manager, segment=segment, left=first)
    assert (scoped["joined_count"], scoped["left_count"]) == (1, 1)

    second = snapshot_create(actor=operator, segment=segment, name="四月活动")
    between = segment_diff(principal=operator, segment=segment, left=first, right=second)
    assert (between["joined_count"], between["left_count"]) == (2, 1)
    backwards = segment_diff(principal=operator, segment=segment, left=second, right=first)
    assert set(backwards["joined"]) == set(between["left"])
    assert segment_diff(principal=operator, segment=segment, left=second)["joined_count"] == 0
    assert set(snapshot_members(first, principal=branch_manager)) == {people["bj_rich"], people["bj_rich2"]}


def test_a_rule_that_could_never_be_rebuilt_is_not_saved(operator):
    with pytest.raises(RuleError) as err:
        segment_create(actor=operator, name="千岁", rule={"op": "and", "rules": [
            {"type": "attribute", "field": "age", "op": "gte", "value": 10**9}]})
    assert err.value.path == "$.rules[0].value" and not Segment.objects.exists()


def test_a_branch_manager_sees_only_their_branchs_counts_trend_and_snapshot_sizes(client, operator, hq_manager,
                                                                                   branch_manager, people):
    import json
    import re

    from segments.services import snapshot_create

    segment = segment_create(actor=operator, name="高净值", rule=RICH)  # firm-wide: 2 in BJ01, 1 in SH01
    segment_rebuild(segment_id=segment.pk)
    snapshot_create(actor=operator, segment=segment, name="十一月名单")

    def seen(user):
        client.force_login(user)
        detail = client.get(f"/segments/{segment.pk}/").content.decode()
        trend = json.loads(re.search(r'id="size-trend-data"[^>]*>(.*?)</script>', detail, re.S).group(1))
        trend = json.loads(trend) if isinstance(trend, str) else trend
        snapshot = re.search(r'data-testid="snapshot-row">.*?<td class="text-end">(\d+)</td>', detail, re.S).group(1)
        listing = client.get("/segments/").content.decode()
        return detail, trend["sizes"], int(snapshot), listing

    detail, sizes, snapshot, listing = seen(hq_manager)
    assert "全公司 3 人" in detail and sizes == [3] and snapshot == 3
    detail, sizes, snapshot, listing = seen(branch_manager)
    assert "全公司" not in detail.split('data-testid="rule-summary"')[1].split("</div>")[0]
    assert "您的范围内 2 人" in detail and sizes == [2] and snapshot == 2
    assert 'data-testid="rebuild-row"' in detail and ">3<" not in detail.split('data-testid="rebuilds"')[1].split("</table>")[0]
    assert "[2]" in listing and "[3]" not in listing  # the list's sparkline is the branch's too
