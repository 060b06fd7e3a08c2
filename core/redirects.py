"""Where a page may send the browser back to after a POST: same-site paths only."""

from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request, fallback: str) -> str:
    """``next`` from the POST (or query) when it is a path on this site (``/…``, not ``//host`` or a scheme);
    otherwise ``fallback``. Every "go back" redirect goes through here, so none can be an open redirect."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


def redirect_back(request, fallback: str):
    return redirect(safe_next(request, fallback))
