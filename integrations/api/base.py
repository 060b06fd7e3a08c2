"""The pieces every /api/v1 view stands on: Bearer-key authentication, scope permission, per-client
rate limit, a size-bounded JSON parser, and ``ApiView`` whose customer helpers always go through
``Customer.objects.visible_to(client)`` (subclasses cannot redefine them)."""

import json
import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import authentication, exceptions, permissions, serializers, throttling
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.validators import EXTERNAL_ID_RE, UNSTORABLE_MESSAGE, text_storable
from customers.models import Customer
from integrations.api_clients import api_client_for_key
from integrations.models import ApiClient

logger = logging.getLogger(__name__)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer scrm_…``. No header → anonymous (the permission answers 401);
    a wrong, unknown or deactivated key → 401."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower() or len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization 头应为 'Bearer <key>'")
        client = api_client_for_key(key=parts[1])
        if client is None:
            raise exceptions.AuthenticationFailed("API 密钥无效或已停用")
        return client, None

    def authenticate_header(self, request):
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "scrm_<prefix>_<secret>"}


class HasApiScope(permissions.BasePermission):
    """The client must hold every scope in the view's ``required_scopes`` (a list, or a dict
    method → list). Anything but an active ApiClient is unauthenticated (401), a missing scope 403."""

    def has_permission(self, request, view):
        client = request.user
        if not isinstance(client, ApiClient) or not client.active:
            raise exceptions.NotAuthenticated("需要 API 密钥：Authorization: Bearer <key>")
        required = view.required_scopes
        if isinstance(required, dict):
            required = required.get(request.method, required.get("*", []))
        missing = [s for s in required if s not in client.effective_scopes()]
        if missing:
            raise exceptions.PermissionDenied(f"缺少权限：{', '.join(missing)}")
        return True


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "服务暂时不可用（缓存服务无法连接），请稍后重试"
    default_code = "service_unavailable"
    wait = 30


class ApiClientRateThrottle(throttling.SimpleRateThrottle):
    """``rate_limit_per_minute`` of the client, counted in the Django cache (Redis) per client."""

    scope = "api_client"

    def __init__(self):  # the rate comes from the client, not from settings
        pass

    def allow_request(self, request, view):
        client = request.user
        if not isinstance(client, ApiClient):
            return True
        self.rate = f"{client.rate_limit_per_minute}/m"
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except (RedisConnectionError, RedisTimeoutError):
            # Redis is down: reads are served without the limiter (logged); writes would queue work on the same
            # Redis, so they answer 503 with Retry-After and the caller sends them again
            if request.method in permissions.SAFE_METHODS:
                logger.warning("rate limiter unavailable (Redis down): %s served unthrottled", request.method)
                return True
            raise ServiceUnavailable() from None

    def get_cache_key(self, request, view):
        return f"throttle_api_{request.user.pk}_{request.user.key_prefix}"


def request_too_large(limit: int) -> ApplicationError:
    return ApplicationError("payload_too_large", f"请求体过大，上限 {limit // (1024 * 1024)} MB", status_code=413)


class BoundedJSONParser(JSONParser):
    """JSON that never reads more than DATA_UPLOAD_MAX_MEMORY_SIZE bytes (DRF streams the body
    and so bypasses Django's own check)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise request_too_large(limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON 格式错误：{exc}") from None
        path = _first_unstorable(data)
        if path:  # PostgreSQL text cannot hold NUL or a lone surrogate: name where it is, before any write
            raise exceptions.ParseError(f"{path}：{UNSTORABLE_MESSAGE}")
        return data


def _first_unstorable(value, path: str = "$") -> str | None:
    if isinstance(value, str):
        return None if text_storable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not text_storable(str(key)):
                return f"{path}.<key>"
            found = _first_unstorable(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _reject_constant(name):
    raise ValueError(f"不支持的数值 {name}")


class ErrorDetailSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True, required=False)
    message = serializers.CharField()
    code = serializers.CharField(required=False)


@extend_schema_field({
    "oneOf": [{"type": "array", "items": {"type": "object", "additionalProperties": True}},
              {"type": "object", "additionalProperties": True}],
    "description": "通常为数组，每项说明一个出错的字段 {field, message, code} 或规则节点 {path, message}；"
                   "超出行数上限（413 too_many_rows）时为对象 {limit, received}"})
class ErrorDetailsField(serializers.JSONField):
    pass


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="机器可读的错误代码，如 invalid、not_found、throttled")
    message = serializers.CharField(help_text="给人看的说明")
    details = ErrorDetailsField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_CODES = {"400": "请求无效（参数、请求体或其中的字段；details 指出哪一个）", "401": "未认证：缺少、错误或已停用的 API 密钥",
               "403": "缺少权限（scope）", "404": "不存在（或不在本客户端的数据范围内）",
               "405": "方法不允许（Allow 头列出可用的方法）", "413": "请求过大：请求体超过上限，或批量行数超过上限",
               "415": "不支持的媒体类型：请求体应为 application/json", "429": "请求过于频繁：Retry-After 秒后再试",
               "503": "服务暂时不可用（数据库或缓存无法连接）：Retry-After 秒后再试"}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "required": True,
                                "description": "多少秒后再试"}}
ERROR_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}, "required": True,
                                 "description": "认证方式"}},
    "405": {"Allow": {"schema": {"type": "string"}, "required": True, "description": "此地址可用的方法"}},
    "429": _RETRY_AFTER,
    "503": _RETRY_AFTER,
}

# path parameters whose converter says less than the API knows (identifiers have a pattern, ids start at 1)
PATH_PARAMETERS = {
    "external_id": ({"type": "string", "pattern": f"^{EXTERNAL_ID_RE.pattern}$", "maxLength": 64},
                    "客户号 external_id（字母、数字和 . _ -，以字母或数字开头，最多 64 个字符）。"
                    "不在本客户端数据范围内的客户与不存在的客户一样答 404"),
    "tag_code": ({"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 50}, "标签代码"),
    "segment_id": ({"type": "integer", "minimum": 1}, "客群编号"),
    "subscription_id": ({"type": "integer", "minimum": 1}, "订阅编号（创建时返回的 id）"),
}


class ApiAutoSchema(AutoSchema):
    """The schema says what the API does: every operation documents the error answers it can give (one error
    shape, with Retry-After / WWW-Authenticate / Allow where the answer carries them), request bodies refuse
    properties they do not declare (``additionalProperties: false``, as the views do), and path identifiers carry
    their pattern."""

    def get_description(self):
        # a view without a docstring of its own must not inherit ApiView's (an implementation note)
        action_doc = get_doc(getattr(self.view, self.method.lower(), None))
        return action_doc or (get_doc(self.view.__class__) if "__doc__" in vars(self.view.__class__)
                              and self.view.__class__.__doc__ else "")

    def error_statuses(self) -> list[str]:
        """400 (any parameter or body, a NUL in the URL), 401, 403, 405, 413 (Content-Length over the limit),
        429 and 503 can answer any operation; 404 those with a path parameter; 415 those with a body."""
        statuses = ["400", "401", "403", "405", "413", "429", "503"]
        if "{" in self.path:
            statuses.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            statuses.append("415")
        return sorted(statuses)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self.error_statuses():
            if code not in responses:
                response = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=ERROR_CODES[code]), code, direction=direction)
                if code in ERROR_HEADERS:
                    response["headers"] = {**ERROR_HEADERS[code], **response.get("headers", {})}
                responses[code] = response
        return responses

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)  # every /api/v1 body refuses unknown fields
        return schema

    def _get_parameters(self):
        parameters = super()._get_parameters()
        for parameter in parameters:  # every string filter reads an empty value as "not given" (selectors)
            if parameter["in"] == "query" and parameter["schema"].get("type") == "string":
                parameter["allowEmptyValue"] = True
        return parameters

    def _resolve_path_parameters(self, variables):
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["name"] in PATH_PARAMETERS:
                schema, description = PATH_PARAMETERS[parameter["name"]]
                parameter["schema"] = dict(schema)
                parameter["description"] = description
        return parameters


_SCOPED_HELPERS = ("customers_visible", "customer_get")


class ApiView(APIView):
    """Base of every /api/v1 view. ``required_scopes`` must be set; customer rows are only ever
    reached through :meth:`customers_visible` / :meth:`customer_get`, which subclasses cannot override."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiScope]
    throttle_classes = [ApiClientRateThrottle]
    parser_classes = [BoundedJSONParser]
    schema = ApiAutoSchema()
    required_scopes: list[str] | dict[str, list[str]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _SCOPED_HELPERS if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__name__} must not override {overridden}: scoping lives in ApiView")
        if not cls.required_scopes and not getattr(cls, "public", False):
            raise TypeError(f"{cls.__name__} must declare required_scopes")

    @property
    def client(self) -> ApiClient:
        return self.request.user

    def initial(self, request, *args, **kwargs):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        super().initial(request, *args, **kwargs)  # authenticate, authorise, throttle first
        if length > limit:
            raise request_too_large(limit)
        values = [*kwargs.values(), *(v for _k, vs in request.query_params.lists() for v in vs)]
        if any("\x00" in str(v) for v in values):
            raise exceptions.ParseError("地址或查询参数不能包含 NUL 字符")

    def customers_visible(self):
        return Customer.objects.visible_to(self.request.user)

    def customer_get(self, external_id: str) -> Customer:
        customer = self.customers_visible().select_related("branch", "advisor").filter(external_id=external_id).first()
        if customer is None:
            raise exceptions.NotFound("客户不存在")
        return customer
