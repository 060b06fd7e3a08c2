"""The Content-Security-Policy (django-csp, CONTENT_SECURITY_POLICY in scrm/settings.py) and the pages that live under it.

Every page answers with a policy that allows scripts only from our own origin or with this response's nonce; the
HTML keeps to it: each inline <script> carries that nonce, no element has an inline on*= handler or hx-on (the
policy blocks them, and htmx runs with allowEval false), no link runs javascript:. The walk reuses the URL list of
tests/test_scope.py, so a new page is checked without being listed here. Escaping data in chart tooltips is
proved in a browser by tests/test_xss_browser.py.
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT
from tests.test_scope import EXEMPT_PREFIXES, PAGES_WITHOUT_OBJECTS, _url, all_patterns, foreign  # noqa: F401 - a fixture

NONCE_RE = re.compile(r"script-src [^;]*'nonce-([A-Za-z0-9+/=]+)'")
# script types the browser does not run (json_script's data blocks), which the policy does not govern
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}


class _PageScan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.inline_nonces: list[str | None] = []
        self.foreign_scripts: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, value in attrs.items():
            if name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"<{tag} {name}=…>")
            if name in ("hx-vars", "data-hx-vars") or (name in ("hx-vals", "data-hx-vals") and (value or "").startswith("js:")):
                self.problems.append(f"<{tag} {name}=js:…>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=javascript:…>")
        if tag == "script":
            if attrs.get("src"):
                if not attrs["src"].startswith("/") or attrs["src"].startswith("//"):
                    self.foreign_scripts.append(attrs["src"])
            elif (attrs.get("type") or "").lower() not in DATA_SCRIPT_TYPES:
                self.inline_nonces.append(attrs.get("nonce"))

    handle_startendtag = handle_starttag


def policy_of(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in header.split(";")) if part}


def check_page(response, where: str, *, nonce_expected: bool) -> str | None:
    """Asserts the page keeps to its policy; returns the policy's nonce."""
    assert "Content-Security-Policy" in response.headers, f"{where}: no CSP header"
    header = response.headers["Content-Security-Policy"]
    match = NONCE_RE.search(header)
    nonce = match.group(1) if match else None
    assert not nonce_expected or nonce, f"{where}: no nonce in {header}"
    scan = _PageScan()
    scan.feed(response.content.decode())
    assert scan.problems == [], f"{where}: inline handlers or javascript: the CSP blocks: {scan.problems}"
    assert scan.foreign_scripts == [], f"{where}: scripts from another origin: {scan.foreign_scripts}"
    assert all(n is not None and n == nonce for n in scan.inline_nonces), (
        f"{where}: inline <script> without this response's nonce {nonce!r}: {scan.inline_nonces}")
    return nonce


def test_policy_directives():
    from django.test import Client

    response = Client().get("/accounts/login/")
    policy = policy_of(response)
    assert policy["default-src"] == "'self'"
    script = policy["script-src"].split()
    assert script[0] == "'self'" and len(script) == 2 and script[1].startswith("'nonce-")
    assert "'unsafe-inline'" not in policy["script-src"] and "unsafe-eval" not in response.headers["Content-Security-Policy"]
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'self'"
    assert policy["style-src"] == "'self' 'unsafe-inline'"


@pytest.mark.django_db
def test_each_role_gets_a_fresh_nonce_and_pages_keep_to_it(client, advisor, branch_manager, hq_manager, operator,
                                                             compliance, admin_user):
    for user in (advisor, branch_manager, hq_manager, operator, compliance, admin_user):
        client.force_login(user)
        first, second = client.get("/"), client.get("/")
        assert first.status_code == 200, user
        nonces = {check_page(r, f"/ as {user.role}", nonce_expected=True) for r in (first, second)}
        assert len(nonces) == 2, f"{user.role}: the nonce must change with every response"
    login = client.get("/accounts/login/")
    check_page(login, "/accounts/login/", nonce_expected=False)


@pytest.mark.django_db
def test_every_page_keeps_to_the_policy(client, foreign, other_branch_advisor, other_branch_manager,  # noqa: F811 - fixture
                                        hq_manager, operator, compliance, admin_user):
    """Each GET page of the project, rendered by the first role (in the foreign objects' scope) allowed to see it."""
    users = (other_branch_advisor, other_branch_manager, hq_manager, operator, compliance, admin_user)
    checked, unreached = 0, []
    for name, route, converters in all_patterns():
        if name.startswith(EXEMPT_PREFIXES) or route.startswith(("admin/", "i18n/", "static/")):
            continue
        if not converters and name not in PAGES_WITHOUT_OBJECTS:
            continue
        url = _url(name, route, converters, foreign) if converters else "/" + route
        for user in users:
            client.force_login(user)
            response = client.get(url)
            if response.status_code == 405:
                break  # a POST-only action
            if response.status_code != 200:
                continue
            if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
                break
            # full pages carry the nonce on base.html's scripts; htmx partials need one only for an inline script
            check_page(response, f"{name} {url} as {user.role}", nonce_expected=b"<html" in response.content)
            checked += 1
            break
        else:
            unreached.append(name)
    assert checked >= 60, f"only {checked} pages checked; not reached by any role: {unreached}"


@pytest.mark.django_db
def test_admin_and_api_docs_keep_to_the_policy(client, admin_user):
    client.force_login(admin_user)
    for url in ("/admin/", "/admin/core/user/", "/admin/core/branch/add/", "/api/v1/docs/"):
        response = client.get(url)
        assert response.status_code == 200, url
        check_page(response, url, nonce_expected=False)
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200 and "javascript" in script["Content-Type"]


def test_templates_have_no_inline_handlers_and_every_inline_script_has_the_nonce():
    """Also covers partials and branches the walk above does not render."""
    problems = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        rel = Path(path).relative_to(ROOT)
        for m in re.finditer(r"<[a-zA-Z][^<>]*?\s(on[a-z]+|hx-on[:\-a-z]*|data-hx-on[:\-a-z]*)\s*=", text):
            problems.append(f"{rel}: {m.group(1)}=")
        for m in re.finditer(r"<script\b([^>]*)>", text):
            attrs = m.group(1)
            if "src=" not in attrs and 'nonce="{{ request.csp_nonce }}"' not in attrs:
                problems.append(f"{rel}: <script{attrs}> without the nonce")
        if "javascript:" in text.replace("javascript-catalog", ""):
            problems.append(f"{rel}: javascript:")
    assert problems == []
