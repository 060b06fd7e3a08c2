"""The 客群 URLs for tests/test_scope.py: every object is a segment of the Shanghai customer's branch (SH01),
so the Beijing branch manager gets 404 by branch and advisors get 404 by role."""

PAGES_WITHOUT_OBJECTS = {"segments:list", "segments:create", "segments:builder", "segments:rule_schema"}


def _segment(objs):
    from segments.models import Segment

    return Segment.objects.create(name="上海客群", branch=objs["customer"].branch, created_by=objs["operator"],
                                  rule={"op": "and", "rules": [{"type": "attribute", "field": "risk_level", "op": "in",
                                                                "value": ["C4"]}]})


def _export(objs):
    from segments.models import SegmentExport

    return SegmentExport.objects.create(segment=_segment(objs), created_by=objs["operator"]).pk


def _action(objs):
    from segments.models import SegmentAction

    return SegmentAction.objects.create(segment=_segment(objs), kind="tag_add", params={"tag": "margin_intent"},
                                        created_by=objs["operator"]).pk


OBJECT_KWARGS = {
    "segment_id": lambda objs: _segment(objs).pk,
    "export_id": _export,
    "segment_action_id": _action,
}
