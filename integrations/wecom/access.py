"""Who may use the WeCom pages: exactly the roles the sidebar shows the page's entry to (core/navigation.py,
keys "wecom" for sync runs and the review queue, "contact_ways", "transfers", and "integrations" for the
callback log), so a page is reachable when, and only when, its link is shown. Everyone else gets 404
(existence does not leak), as elsewhere. Operators see no personal data here: mobiles are masked."""

from django.http import Http404

from core.navigation import user_may_use


def require_nav(user, key: str) -> None:
    if not (getattr(user, "is_authenticated", False) and user_may_use(user, key)):
        raise Http404(f"not for this role ({key})")
