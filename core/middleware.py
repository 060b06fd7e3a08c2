import re
import uuid

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse
from django.utils import translation

from core.logging import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Tags each request with an id (the caller's X-Request-ID when sane) for logs and the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request.id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.id
        return response


class LanguageMiddleware:
    """Simplified Chinese unless the user chose another language (the language switch sets a cookie).

    Unlike Django's LocaleMiddleware this ignores the browser's Accept-Language: the product is
    Chinese first for everyone, English only on request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        if not translation.check_for_language(language) or language not in dict(settings.LANGUAGES):
            language = settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", request.LANGUAGE_CODE)
        return response


class PasswordChangeRequiredMiddleware:
    """A staff member whose password an admin set (a new account, a reset) reaches only the password change page,
    logout and the language switch until they choose their own (``User.must_change_password``, cleared by
    core.staff_views.OwnPasswordChangeView). The REST API (keys, not sessions) is not affected."""

    ALLOWED = {"password_change", "password_change_done", "logout", "login", "set_language"}
    PASS_PREFIXES = ("/api/", "/static/", "/healthz")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(self.PASS_PREFIXES):
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated and getattr(user, "must_change_password", False):
                try:
                    name = resolve(request.path_info).view_name
                except Resolver404:
                    name = None
                if name not in self.ALLOWED:
                    target = reverse("password_change")
                    if request.headers.get("HX-Request"):
                        response = HttpResponse(status=204)
                        response["HX-Redirect"] = target
                        return response
                    return redirect(target)
        return self.get_response(request)


class NoStoreMiddleware:
    """Answers to a signed-in user or an API client carry personal data (the 360° page, a revealed mobile, the
    API's customers): no browser or proxy cache keeps them (``Cache-Control: private, no-store``) unless a view
    said otherwise. Public pages and static files are not touched."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        if (signed_in or request.path.startswith("/api/")) and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "private, no-store"
        return response
