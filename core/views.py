from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from core.health import health_report

RETRY_AFTER_SECONDS = 30


@never_cache
def healthz(request):
    healthy, parts = health_report()
    return JsonResponse({"status": "ok" if healthy else "degraded", **parts}, status=200 if healthy else 503)


def _api_error(request, status: int, code: str, message: str):
    """Under /api/ every error has the API's one shape, even when Django (not DRF) answers."""
    if request.path.startswith("/api/"):
        from core.errors import error_body

        return JsonResponse(error_body(code, message), status=status, json_dumps_params={"ensure_ascii": False})
    return None


def error_400(request, exception=None):
    from django.core.exceptions import RequestDataTooBig
    from django.views.defaults import bad_request

    if isinstance(exception, RequestDataTooBig):
        too_big = _api_error(request, 413, "payload_too_large", "请求体过大")
        if too_big:
            return too_big
    return _api_error(request, 400, "bad_request", "请求无效") or bad_request(request, exception)


def error_403(request, exception=None):
    return _api_error(request, 403, "permission_denied", "无权访问") or render(request, "errors/403.html", status=403)


def error_404(request, exception=None):
    return _api_error(request, 404, "not_found", "地址不存在") or render(request, "errors/404.html", status=404)


def _outage(exc) -> str | None:
    """"database" or "cache" when ``exc`` says a store is unreachable (not a bug in our code)."""
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, InterfaceError | OperationalError):
        return "database"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "cache"
    return None


def error_500(request):
    """An outage of PostgreSQL or Redis answers 503 with Retry-After (the product's own page, or the API error
    shape); anything else 500. Rendered without the request's context processors, which need the database."""
    import sys

    store = _outage(sys.exc_info()[1])
    if store is not None:
        message = "数据库暂时无法连接，请稍后重试" if store == "database" else "缓存服务暂时无法连接，请稍后重试"
        response = _api_error(request, 503, "service_unavailable", message) or HttpResponse(
            loader.render_to_string("errors/503.html", {"store": store}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return _api_error(request, 500, "server_error", "服务器内部错误") or HttpResponse(
        loader.render_to_string("errors/500.html"), status=500)


@csrf_exempt  # API callers have no CSRF cookie; without this a POST to an unknown route got the HTML 403
def api_not_found(request, *args, **kwargs):
    """Catch-all under /api/: an unknown route answers 404 in the API error shape, for any method."""
    return _api_error(request, 404, "not_found", f"没有这个接口：{request.method} {request.path}")
