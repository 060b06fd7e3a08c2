"""The pieces every /api/v1 view stands on: Bearer-key authentication, scope permission, per-client
rate limit, a size-bounded JSON parser, and ``ApiView`` whose customer helpers always go through
``Customer.objects.visible_to(client)`` (subclasses cannot redefine them)."""

import json
import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import authentication, exceptions, permissions, serializers, throttling
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.validators import UNSTORABLE_MESSAGE, text_storable
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


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_CODES = {"400": "请求无效", "401": "未认证", "403": "缺少权限", "404": "不存在", "405": "方法不允许",
               "413": "请求过大", "415": "不支持的媒体类型", "429": "请求过于频繁"}


class ApiAutoSchema(AutoSchema):
    """Every operation documents the one error shape for the 4xx answers it can give."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in ERROR_CODES:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code, direction=direction))
        return responses


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
