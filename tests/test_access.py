"""The permission table (core/access.py) is the one place that decides by role: every URL of the project declares
the feature that guards it, and every page without an object in its path answers each role as the table says
(404 for a role that may not use it, the page for one that may). The sidebar shows exactly the permitted areas."""

from fnmatch import fnmatchcase

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core.access import API_KEY, PERMISSIONS, PUBLIC, SIGNED_IN, URL_FEATURES, may, url_feature
from core.models import Role
from core.navigation import NAV_ITEMS, nav_items_for

NOT_ROLE_BASED = {PUBLIC, SIGNED_IN, API_KEY}


def _walk(resolver, namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, ns)
        elif isinstance(entry, URLPattern):
            # an unnamed pattern is named by its namespace (Django admin's object URLs)
            yield f"{namespace}{entry.name or '?'}", bool(getattr(entry.pattern, "converters", {})
                                                           or "(?P<" in str(entry.pattern))


PATTERNS = sorted(set(_walk(get_resolver())))


def test_every_url_declares_the_feature_that_guards_it():
    undeclared = [name for name, _has_args in PATTERNS if url_feature(name) is None]
    assert undeclared == [], "declare these in core.access.URL_FEATURES"
    unknown = {feature for _pattern, feature in URL_FEATURES if feature not in PERMISSIONS | dict.fromkeys(NOT_ROLE_BASED)}
    assert unknown == set()
    unused = [pattern for pattern, _feature in URL_FEATURES if not any(fnmatchcase(name, pattern) for name, _a in PATTERNS)]
    assert unused == [], "these declarations match no URL any more"


def test_an_unknown_feature_is_a_programming_error(advisor):
    with pytest.raises(KeyError):
        may(advisor, "no_such_feature")


@pytest.fixture
def one_of_each_role(make_staff):
    return {role: make_staff(f"access_{role}", role, "BJ01" if role in (Role.ADVISOR, Role.BRANCH_MANAGER) else None)
            for role in Role.values}


def test_the_sidebar_shows_exactly_the_areas_each_role_may_use(one_of_each_role):
    for role, user in one_of_each_role.items():
        shown = {item["key"] for item in nav_items_for(user)}
        assert shown == {item.key for item in NAV_ITEMS if role in PERMISSIONS[item.key]}, role


ROLE_PAGES = [name for name, has_args in PATTERNS
              if not has_args and url_feature(name) in PERMISSIONS and not name.startswith("admin:")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_page_answers_each_role_as_the_table_says(client, one_of_each_role):
    assert len(ROLE_PAGES) > 40
    wrong = []
    for role, user in one_of_each_role.items():
        client.force_login(user)
        for name in ROLE_PAGES:
            response = client.get(reverse(name))
            if response.status_code == 405:  # POST only: the GET says nothing about roles
                continue
            allowed = role in PERMISSIONS[url_feature(name)]
            denied = response.status_code in (403, 404)
            if allowed == denied:
                wrong.append((role, name, url_feature(name), response.status_code))
        client.logout()
    assert wrong == [], wrong
