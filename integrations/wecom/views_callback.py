"""/integrations/wecom/callback/: the URL saved in WeCom's admin console as the 接收事件服务器.

No session and no CSRF token: WeCom's server signs each request with the callback token instead.
Anything that does not verify gets 403 and changes nothing; a verified event is stored and answered
with "success" at once (WeCom allows 5 s), the work happens in Celery.
"""

import logging

from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from integrations.wecom.callbacks import MAX_BODY_BYTES, CallbackRejected, callback_receive, callback_verify_url

logger = logging.getLogger(__name__)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def callback(request):
    params = {"msg_signature": request.GET.get("msg_signature", ""), "timestamp": request.GET.get("timestamp", ""),
              "nonce": request.GET.get("nonce", "")}
    try:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:  # refused before the body is read
            raise CallbackRejected(f"declared body of {declared} bytes is over the cap")
        if request.method == "GET":
            echo = callback_verify_url(echostr=request.GET.get("echostr", ""), **params)
            return HttpResponse(echo, content_type="text/plain; charset=utf-8")
        callback_receive(body=request.body, **params)
    except CallbackRejected as exc:
        logger.warning("WeCom callback refused from %s: %s", request.META.get("REMOTE_ADDR"), exc)
        return HttpResponseForbidden("forbidden", content_type="text/plain")
    return HttpResponse("success", content_type="text/plain")
