"""Serializers of the /api/v1/segments endpoints (documentation of the shapes; the rule itself is checked by
segments.rules.rule_validate, which names the path of a bad node)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"type": "object", "additionalProperties": True})
class RuleField(serializers.JSONField):
    pass


class SegmentPreviewRequestSerializer(serializers.Serializer):
    rule = RuleField(help_text="规则树，格式见 /segments/rule-schema.json，例如 "
                                           '{"op": "and", "rules": [{"type": "tier", "op": "in", "value": ["important_value"]}]}')


class SegmentPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="本 API 客户端数据范围内符合规则的客户数")


class SegmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    branch = serializers.CharField(source="branch.code", allow_null=True, default=None,
                                   help_text="营业部代码；null 表示全公司客群")
    member_count = serializers.IntegerField(source="visible_count",
                                            help_text="最近一次重算的成员中，本客户端数据范围内的人数")
    rebuilt_at = serializers.DateTimeField(allow_null=True)
    rule = serializers.JSONField()
