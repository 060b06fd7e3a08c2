"""/api/v1 views: one small view per action, thin; the work is in integrations/ingest.py and selectors."""

from urllib.parse import urlencode

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.errors import ApplicationError
from customers.models import Product, RiskLevel
from integrations import ingest
from integrations.api import selectors
from integrations.api.base import ApiView
from integrations.api.serializers import (
    BulkResultSerializer,
    CustomerOutputSerializer,
    CustomerPatchSerializer,
    CustomerRowSerializer,
    CustomerTagInputSerializer,
    CustomerTagOutputSerializer,
    CustomerTierSerializer,
    CustomFieldDefinitionSerializer,
    EventRowSerializer,
    ProductRowSerializer,
    ProductSerializer,
    TagOutputSerializer,
    TierOverviewSerializer,
    TradeRowSerializer,
    datetime_pattern,
)
from integrations.models import ApiScope
from tagging.models import CustomerTag, Tag

MAX_CUSTOMER_ROWS = 5_000
MAX_PRODUCT_ROWS = 5_000
MAX_TRADE_ROWS = 10_000
MAX_EVENT_ROWS = 10_000


def bulk_rows(data, key: str, limit: int) -> list:
    """``data[key]`` as a list of at most ``limit`` rows; 400 when the envelope is wrong, 413 when too many."""
    if not isinstance(data, dict) or key not in data:
        raise ApplicationError("invalid", f"请求体应为 {{\"{key}\": [...]}}",
                               [{"field": key, "message": "必填", "code": "required"}])
    rows = data[key]
    if not isinstance(rows, list):
        raise ApplicationError("invalid", f"{key} 应为数组", [{"field": key, "message": "应为数组", "code": "invalid_type"}])
    extra = sorted(str(k) for k in data if k != key)
    if extra:
        raise ApplicationError("invalid", "未知字段",
                               [{"field": k, "message": "未知字段", "code": "unknown_field"} for k in extra])
    if len(rows) > limit:
        raise ApplicationError("too_many_rows", f"一次最多 {limit} 行，本次 {len(rows)} 行；请分批提交",
                               {"limit": limit, "received": len(rows)}, status_code=413)
    return rows


# --- customers -------------------------------------------------------------------------------

class CustomerBulkUpsertApi(ApiView):
    required_scopes = [ApiScope.CUSTOMERS_WRITE]

    @extend_schema(request=inline_serializer("CustomersBulkRequest", {"customers": CustomerRowSerializer(many=True)}),
                   responses={200: BulkResultSerializer}, summary="批量新增或更新客户（按 external_id，幂等）")
    def post(self, request):
        rows = bulk_rows(request.data, "customers", MAX_CUSTOMER_ROWS)
        return Response(ingest.customers_upsert(client=self.client, rows=rows))



PAGE_PARAMETERS = [
    OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": selectors.MAX_PAGE_SIZE,
                                   "default": selectors.DEFAULT_PAGE_SIZE},
                     description=f"每页条数，1–{selectors.MAX_PAGE_SIZE}，默认 {selectors.DEFAULT_PAGE_SIZE}"),
    OpenApiParameter("cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
                     description="上一页 next 中的游标（原样使用，不要自己构造）；空值表示第一页"),
    OpenApiParameter("updated_since", {"type": "string", "format": "date-time",
                                       "pattern": datetime_pattern(r"(19[0-9]{2}|[2-8][0-9]{3}|9000)")},
                     allow_blank=True,
                     description="只返回此时间及之后更新的客户。ISO 8601，时区偏移最多 ±14:00（不带偏移时按北京时间），"
                                 "年份 1900–9000；URL 中的 + 请写成 %2B。空值表示不筛选"),
]


def customer_page_response(request, *, customers, params) -> Response:
    """One keyset page of customers with the ``next`` link (same query, new cursor) — every customer list
    of the API answers this way (customers, segment members)."""
    rows, after = selectors.customer_api_page(customers=customers, params=params)
    next_url = None
    if after is not None:
        query = {k: v for k, v in request.query_params.items() if k != "cursor"}
        query["cursor"] = selectors.cursor_encode(*after)
        next_url = request.build_absolute_uri(request.path) + "?" + urlencode(query)
    return Response({"next": next_url, "results": CustomerOutputSerializer(rows, many=True).data})

class CustomerListApi(ApiView):
    required_scopes = [ApiScope.CUSTOMERS_READ]

    @extend_schema(
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("branch", str, description="营业部代码；空值表示不筛选"),
            OpenApiParameter("tier", str, description="分层代码；none=未分层；空值表示不筛选"),
            OpenApiParameter("tag", str, description="标签代码；空值表示不筛选"),
            OpenApiParameter("risk_level", str, enum=RiskLevel.values, allow_blank=True,
                             description="风险等级（大小写均可）；空值表示不筛选"),
        ],
        responses={200: inline_serializer("CustomerPage", {
            "next": serializers.URLField(allow_null=True), "results": CustomerOutputSerializer(many=True)})},
        operation_id="customers_list", summary="客户列表（按 updated_at, id 游标分页；个人信息脱敏，只给年龄段）")
    def get(self, request):
        return customer_page_response(request, customers=self.customers_visible(),
                                      params=selectors.api_list_params(request.query_params))


class CustomerDetailApi(ApiView):
    required_scopes = {"GET": [ApiScope.CUSTOMERS_READ], "PATCH": [ApiScope.CUSTOMERS_WRITE],
                       "*": [ApiScope.CUSTOMERS_READ]}

    @extend_schema(responses={200: CustomerOutputSerializer}, summary="客户详情（个人信息脱敏，只给年龄段）")
    def get(self, request, external_id: str):
        customer = self.customer_get(external_id)
        body = selectors.customer_api_body(customers=self.customers_visible(), external_id=customer.external_id)
        return Response(CustomerOutputSerializer(body).data)

    @extend_schema(request=CustomerPatchSerializer, responses={200: CustomerOutputSerializer},
                   summary="修改客户（校验与批量接口相同）")
    def patch(self, request, external_id: str):
        customer = self.customer_get(external_id)
        ingest.customer_patch(client=self.client, customer=customer, data=request.data)
        body = selectors.customer_api_body(customers=self.customers_visible(), external_id=customer.external_id)
        return Response(CustomerOutputSerializer(body).data)


# --- customer tags and tier -----------------------------------------------------------------

class CustomerTagListApi(ApiView):
    required_scopes = {"GET": [ApiScope.TAGS_READ], "POST": [ApiScope.TAGS_WRITE], "*": [ApiScope.TAGS_READ]}

    @extend_schema(responses={200: CustomerTagOutputSerializer(many=True)}, summary="客户当前标签")
    def get(self, request, external_id: str):
        customer = self.customer_get(external_id)
        rows = (CustomerTag.objects.current().filter(customer=customer).select_related("tag__category")
                .order_by("tag__code"))
        return Response(CustomerTagOutputSerializer(rows, many=True).data)

    @extend_schema(request=CustomerTagInputSerializer, responses={200: CustomerTagOutputSerializer,
                                                                   201: CustomerTagOutputSerializer},
                   summary="给客户打标签（来源 api；幂等）")
    def post(self, request, external_id: str):
        customer = self.customer_get(external_id)
        if not isinstance(request.data, dict):
            raise ApplicationError("invalid", "请求体应为一个对象")
        extra = sorted(str(k) for k in request.data if k not in CustomerTagInputSerializer().fields)
        if extra:
            raise ApplicationError("invalid", "未知字段",
                                   [{"field": k, "message": "未知字段", "code": "unknown_field"} for k in extra])
        data = CustomerTagInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        expires_at = data.validated_data["expires_at"]
        raw_expiry = request.data.get("expires_at")
        if expires_at is not None and isinstance(raw_expiry, str) and ingest_naive(raw_expiry):
            raise ApplicationError("invalid", "过期时间必须带时区偏移",
                                   [{"field": "expires_at", "message": "必须带时区偏移", "code": "naive_datetime"}])
        if expires_at is not None and isinstance(raw_expiry, str) and not ingest_offset_valid(raw_expiry):
            raise ApplicationError("invalid", "过期时间的时区偏移应在 -14:00 到 +14:00 之间", [
                {"field": "expires_at", "message": "时区偏移应在 -14:00 到 +14:00 之间", "code": "invalid_datetime"}])
        tag = ingest.tag_get_active(code=data.validated_data["tag"])
        with transaction.atomic():  # the answer is read under the customer's tag lock: a concurrent DELETE waits
            existed = CustomerTag.objects.current().filter(customer=customer, tag=tag).exists()
            row = ingest.customer_tag_set(client=self.client, customer=customer, tag=tag,
                                          evidence=data.validated_data["evidence"], expires_at=expires_at)
            row = CustomerTag.objects.select_related("tag__category").get(pk=row.pk)
        return Response(CustomerTagOutputSerializer(row).data,
                        status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


def ingest_naive(text: str) -> bool:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.strip()).tzinfo is None
    except ValueError:
        return False


def ingest_offset_valid(text: str) -> bool:
    """Whether the offset written in ``text`` is within ±14:00, as everywhere else in the API (DRF would otherwise
    convert +20:00 to Shanghai time and take it)."""
    from django.utils.dateparse import parse_datetime

    from core.validators import utc_offset_valid

    try:
        parsed = parse_datetime(text.strip())
    except ValueError:
        return True  # DRF has parsed it already; a form it reads differently is its answer
    return parsed is None or utc_offset_valid(parsed)


class CustomerTagDeleteApi(ApiView):
    required_scopes = [ApiScope.TAGS_WRITE]

    @extend_schema(responses={204: None}, summary="移除客户的标签")
    def delete(self, request, external_id: str, tag_code: str):
        customer = self.customer_get(external_id)
        tag = Tag.objects.filter(code=tag_code).first()
        if tag is None or not ingest.customer_tag_unset(client=self.client, customer=customer, tag=tag):
            raise exceptions.NotFound("客户没有此标签")
        return Response(status=status.HTTP_204_NO_CONTENT)


class CustomerTierApi(ApiView):
    required_scopes = [ApiScope.TIERS_READ]

    @extend_schema(responses={200: CustomerTierSerializer}, summary="客户当前分层（未分层时 404）")
    def get(self, request, external_id: str):
        customer = self.customer_get(external_id)
        tier = selectors.customer_tier_for_api(customer=customer)
        if tier is None:
            raise ApplicationError("not_tiered", "该客户尚未分层", status_code=404)
        return Response(CustomerTierSerializer(tier).data)


# --- trades and events ----------------------------------------------------------------------

class TradeBulkApi(ApiView):
    required_scopes = [ApiScope.TRADES_WRITE]

    @extend_schema(request=inline_serializer("TradesBulkRequest", {"trades": TradeRowSerializer(many=True)}),
                   responses={200: BulkResultSerializer}, summary="批量写入交易（按 external_id，幂等）")
    def post(self, request):
        rows = bulk_rows(request.data, "trades", MAX_TRADE_ROWS)
        return Response(ingest.trades_ingest(client=self.client, rows=rows))


class EventBulkApi(ApiView):
    required_scopes = [ApiScope.EVENTS_WRITE]

    @extend_schema(request=inline_serializer("EventsBulkRequest", {"events": EventRowSerializer(many=True)}),
                   responses={200: BulkResultSerializer}, summary="批量写入行为事件（按 event_id，幂等）")
    def post(self, request):
        rows = bulk_rows(request.data, "events", MAX_EVENT_ROWS)
        return Response(ingest.events_ingest(client=self.client, rows=rows))


# --- reference data -------------------------------------------------------------------------

class ProductListApi(ApiView):
    required_scopes = [ApiScope.PRODUCTS_READ]

    @extend_schema(responses={200: inline_serializer("ProductList", {"results": ProductSerializer(many=True)})},
                   operation_id="products_list", summary="产品列表")
    def get(self, request):
        return Response({"results": ProductSerializer(Product.objects.order_by("code"), many=True).data})


class ProductBulkUpsertApi(ApiView):
    required_scopes = [ApiScope.PRODUCTS_WRITE]

    @extend_schema(request=inline_serializer("ProductsBulkRequest", {"products": ProductRowSerializer(many=True)}),
                   responses={200: BulkResultSerializer}, summary="批量新增或更新产品（按 code，幂等）")
    def post(self, request):
        rows = bulk_rows(request.data, "products", MAX_PRODUCT_ROWS)
        return Response(ingest.products_upsert(client=self.client, rows=rows))


class CustomFieldListApi(ApiView):
    required_scopes = [ApiScope.CUSTOMERS_READ]

    @extend_schema(responses={200: inline_serializer("CustomFieldList", {
        "results": CustomFieldDefinitionSerializer(many=True)})},
        operation_id="custom_fields_list", summary="启用中的客户自定义字段（客户体 custom_fields 的键与取值规则）")
    def get(self, request):
        from customers.custom_fields import definitions_active

        return Response({"results": CustomFieldDefinitionSerializer(definitions_active(), many=True).data})


class TagListApi(ApiView):
    required_scopes = [ApiScope.TAGS_READ]

    @extend_schema(responses={200: inline_serializer("TagList", {"results": TagOutputSerializer(many=True)})},
                   operation_id="tags_list", summary="启用中的标签")
    def get(self, request):
        tags = Tag.objects.filter(active=True).select_related("category").order_by("code")
        return Response({"results": TagOutputSerializer(tags, many=True).data})


class TierOverviewApi(ApiView):
    required_scopes = [ApiScope.TIERS_READ]

    @extend_schema(responses={200: TierOverviewSerializer}, summary="最近一次全量分层与本客户端范围内的人数")
    def get(self, request):
        overview = selectors.tier_overview_for_client(customers=self.customers_visible())
        return Response(TierOverviewSerializer(overview).data)
