"""/api/v1/segments: the live count of a rule, the saved segments and their members — all within the API
client's branch scope (a branch-bound client sees firm-wide segments and its branch's; another branch's
segment is 404)."""


from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from core.errors import ApplicationError
from integrations.api import selectors
from integrations.api.base import ApiView
from integrations.api.serializers import CustomerOutputSerializer
from integrations.api.serializers_segments import (
    SegmentOutputSerializer,
    SegmentPreviewRequestSerializer,
    SegmentPreviewSerializer,
)
from integrations.api.views import PAGE_PARAMETERS, customer_page_response
from integrations.models import ApiScope
from segments import selectors as segment_selectors


class SegmentPreviewApi(ApiView):
    required_scopes = [ApiScope.SEGMENTS_READ]

    @extend_schema(request=SegmentPreviewRequestSerializer, responses={200: SegmentPreviewSerializer},
                   operation_id="segments_preview",
                   summary="规则实时计数（本客户端范围内）；规则有误时 400，details 给出出错节点的 path")
    def post(self, request):
        data = request.data
        if not isinstance(data, dict) or "rule" not in data:
            raise ApplicationError("invalid", '请求体应为 {"rule": {...}}',
                                   [{"field": "rule", "message": "必填", "code": "required"}])
        extra = sorted(str(k) for k in data if k != "rule")
        if extra:
            raise ApplicationError("invalid", "未知字段",
                                   [{"field": k, "message": "未知字段", "code": "unknown_field"} for k in extra])
        preview = segment_selectors.rule_preview(data["rule"], principal=self.client, sample_size=0, breakdowns=False)
        return Response({"count": preview["count"]})


class SegmentListApi(ApiView):
    required_scopes = [ApiScope.SEGMENTS_READ]

    @extend_schema(responses={200: inline_serializer("SegmentList", {"results": SegmentOutputSerializer(many=True)})},
                   operation_id="segments_list", summary="客群列表（未归档；人数为本客户端范围内的成员数）")
    def get(self, request):
        segments = segment_selectors.segments_with_member_counts(self.client).order_by("pk")
        return Response({"results": SegmentOutputSerializer(segments, many=True).data})


class SegmentMembersApi(ApiView):
    required_scopes = [ApiScope.SEGMENTS_READ]

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={200: inline_serializer("SegmentMemberPage", {
            "next": serializers.URLField(allow_null=True), "results": CustomerOutputSerializer(many=True)})},
        operation_id="segments_members",
        summary="客群成员（最近一次重算的名单，本客户端范围内；按 updated_at, id 游标分页；个人信息脱敏）")
    def get(self, request, segment_id: int):
        segment = segment_selectors.segment_get_for_user(self.client, segment_id)
        params = selectors.api_list_params(request.query_params)
        params["filters"] = {}  # members are the filter; the customer list's filters do not apply here
        members = segment_selectors.segment_members(segment, principal=self.client)
        return customer_page_response(request, customers=members, params=params)
