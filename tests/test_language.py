"""Every page speaks one language: the one the user chose.

The pages are the ones tests/test_scope.py walks (every URL pattern of the project, with an object of each kind
in its path). They are rendered on a demo data set whose every stored text was made ASCII first, so:

* in English, any CJK character left in the visible text is a UI string that was never translated (or never
  marked for translation). Allowed: the language menu's own native name (简体中文); elements marked
  ``translate="no"`` (content that is Chinese by nature, e.g. the Chinese column names the import accepts); and
  the Chinese an English translation keeps on purpose (examples of what the user types or the product matches
  literally, such as conversation keywords and 保本), taken from the catalogue itself;
* in Chinese, any English phrase of the English catalogue (a msgstr of two words or more) in the visible text is a
  UI string that skipped translation, e.g. a hard-coded English label or a switch that forgets to translate.
  Phrases that also occur in a Chinese msgid (product names, codes such as "A/B") are allowed.

Visible text is the text of the page without <script> and <style>, plus the attributes people read (title,
placeholder, aria-label, alt, data-confirm, button values, and data-w-*: the words a chart script shows). Tag codes,
external ids and other ASCII data are no CJK, and are no catalogue phrase either.
"""

import os
import re
from html.parser import HTMLParser

import pytest
from babel.messages.pofile import read_po
from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from test_scope import EXEMPT_PREFIXES, _url, all_patterns

from conftest import ROOT

CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\u3000-\u303f]+")
# a language's name in its own language, as the language menu shows it in every language
NATIVE_LANGUAGE_NAMES = {"简体中文", "中文"}
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "data-confirm", "label"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}


class VisibleText(HTMLParser):
    """The text a person reads on the page, one chunk per text node or attribute. Left out: <script> and <style>,
    and elements marked ``translate="no"`` (HTML's own mark for content that is not to be translated, e.g. the
    Chinese column names the customer import accepts)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0  # depth inside <script>, <style> or a translate="no" element
        self._open: list[str] = []  # the tags open inside the skipped element
        self._language_menu = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._skip:
            if tag not in VOID:
                self._open.append(tag)
            return
        if tag in ("script", "style") or attrs.get("translate") == "no":
            if tag not in VOID:
                self._skip, self._open = 1, [tag]
            return
        if tag == "select" and attrs.get("name") == "language":
            self._language_menu = True
        for name, value in attrs.items():
            if value and (name in READ_ATTRIBUTES or name.startswith("data-w-")):  # data-w-*: words scripts show
                self.chunks.append(value)
        if tag == "input" and attrs.get("type") in ("submit", "button", "reset") and attrs.get("value"):
            self.chunks.append(attrs["value"])

    def handle_endtag(self, tag):
        if self._skip:
            if tag in self._open:  # close it (and whatever was left open inside it)
                del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]
            self._skip = 1 if self._open else 0
            return
        if tag == "select":
            self._language_menu = False

    def handle_data(self, data):
        if self._skip or not data.strip():
            return
        if self._language_menu and data.strip() in NATIVE_LANGUAGE_NAMES:
            return
        self.chunks.append(data.strip())


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return parser.chunks


# --- the data: the demo data set, every stored text made ASCII --------------------------------------------------

def _asciify(value, tokens: dict):
    if isinstance(value, str):
        return CJK.sub(lambda m: tokens.setdefault(m.group(), f"Data{len(tokens) + 1}"), value)
    if isinstance(value, list):
        return [_asciify(v, tokens) for v in value]
    if isinstance(value, dict):
        return {_asciify(k, tokens): _asciify(v, tokens) for k, v in value.items()}
    return value


def data_make_ascii() -> int:
    """Replace every CJK run in every stored text (char, text and JSON columns of every model) with an ASCII token,
    the same token for the same run, so unique values stay unique. Returns the number of rows changed."""
    tokens: dict = {}
    changed = 0
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        fields = [f.attname for f in meta.concrete_fields
                  if isinstance(f, (models.CharField, models.TextField, models.JSONField)) and not f.primary_key]
        if not fields:
            continue
        for pk, *values in model._base_manager.values_list("pk", *fields).iterator():
            update = {}
            for name, value in zip(fields, values, strict=True):
                new = _asciify(value, tokens)
                if new != value:
                    update[name] = new
            if update:
                model._base_manager.filter(pk=pk).update(**update)
                changed += 1
    return changed


def _foreign_objects(advisor, operator):
    """What tests/test_scope.py's OBJECT_KWARGS factories take, in the advisor's own scope."""
    from datetime import timedelta

    from django.utils import timezone

    from customers.models import Customer
    from customers.tests.factories import TaskFactory
    from tagging.conversation import suggestions_create_for_text

    customer, mine = Customer.objects.filter(advisor=advisor).order_by("pk")[:2]
    task = TaskFactory(customer=customer, assignee=advisor, due_at=timezone.now() + timedelta(hours=1))
    suggestion = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type="note", source_id=1)[0]
    return {"customer": customer, "task": task, "mine": mine, "operator": operator, "suggestion": suggestion}


def _segment_with_every_kind_of_rule(operator):
    """A segment whose rule summary (segments/builder.py) uses every kind of condition."""
    from segments.models import Segment

    rule = {"op": "and", "rules": [
        {"type": "trades", "measure": "count", "op": "gte", "value": 2, "within_days": 180, "product_type": "fund"},
        {"type": "tag", "op": "has", "tag": "high_net_worth", "within_days": 30},
        {"type": "events", "event_type": "app_login", "op": "gte", "value": 3, "within_days": 30},
        {"type": "tier", "op": "in", "value": ["important_value", "important_retain"]},
        {"type": "tier_change", "direction": "down", "within_days": 30, "to": ["important_retain"]},
        {"type": "attribute", "field": "lifecycle_stage", "op": "in", "value": ["retain"]},
        {"type": "attribute", "field": "total_assets", "op": "between", "value": [1000, 500000]},
        {"op": "or", "not": True, "rules": [{"type": "group", "op": "member", "purpose": "fund"},
                                            {"type": "attribute", "field": "utm_source", "op": "eq", "value": "douyin"}]}]}
    return Segment.objects.create(name="Every rule", created_by=operator, rule=rule)


def _demo_journey_pages() -> list[tuple[str, str]]:
    """The journey pages once more for each demo journey (branches, A/B, every kind of step), each step's form too."""
    from sop.models import Journey

    pages = []
    for journey in Journey.objects.exclude(name__startswith="上海"):
        for name, _route, converters in all_patterns():
            if set(converters) == {"sop_journey_id"} and not name.startswith(EXEMPT_PREFIXES):
                pages.append((name, reverse(name, kwargs={"sop_journey_id": journey.pk})))
        for step in (journey.draft or {}).get("steps", []):
            pages.append(("sop:journey_step", reverse("sop:journey_step", kwargs={"sop_journey_id": journey.pk,
                                                                                  "sop_step_id": step["id"]})))
    return pages


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The demo data set (staff, clients, trades, tiers, rule tags, journeys, the advisors' workbench) and one object
    for every URL of the walk, then every stored text made ASCII. Yields the users and the pages' URLs."""
    from django.core.cache import cache
    from django.core.management import call_command

    from core.models import User
    from dashboards.analyses.refresh import analyses_refresh
    from sop.demo import sop_demo_seed

    with (django_db_blocker.unblock(), transaction.atomic(), pytest.MonkeyPatch.context() as env,
          open(os.devnull, "w") as quiet):
        env.setenv("SCRM_DEMO_CUSTOMERS", "120")
        call_command("demo_load", stdout=quiet)
        sop_demo_seed()
        segment = _segment_with_every_kind_of_rule(User.objects.get(username="operator"))
        admin = User.objects.get(username="admin")
        advisor = User.objects.get(username="advisor_sh")
        objs = _foreign_objects(advisor, User.objects.get(username="operator"))
        pages = []
        for name, route, converters in all_patterns():
            if name.startswith(EXEMPT_PREFIXES) or route.startswith(("admin/", "i18n/", "static/")):
                continue
            pages.append((name, _url(name, route, converters, objs) if converters else "/" + route))
        pages.append(("segments:detail", reverse("segments:detail", args=[segment.pk])))
        pages += _demo_journey_pages()
        data_make_ascii()
        analyses_refresh(full=True)  # the analyses' summary tables, so their pages draw their charts
        cache.clear()
        yield {"admin": admin, "advisor": advisor, "pages": pages}
        transaction.set_rollback(True)
    cache.clear()


@pytest.fixture
def data(world, db):
    return world


def _render(client, user, language, pages):
    """(page name, visible text chunks) of every page the user may GET as HTML."""
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    for name, url in pages:
        response = client.get(url)
        if response.status_code != 200 or not response.get("Content-Type", "").startswith("text/html"):
            continue
        body = b"".join(response.streaming_content) if response.streaming else response.content
        yield name, url, visible_text(body.decode())


def chinese_in_english_catalogue() -> set[str]:
    """The CJK runs the English translations keep on purpose: examples of Chinese the user types or the product
    matches literally (conversation keywords and their {时间} token, banned promises such as 保本)."""
    with (ROOT / "locale/en/LC_MESSAGES/django.po").open("rb") as f:
        catalog = read_po(f)
    return {run for m in catalog if m.id for string in (m.string if isinstance(m.string, tuple) else (m.string,))
            for run in CJK.findall(string or "")}


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "advisor"])
def test_english_pages_have_no_chinese_outside_data(client, data, role):
    allowed = chinese_in_english_catalogue()
    found, rendered = {}, 0
    for name, url, chunks in _render(client, data[role], "en", data["pages"]):
        rendered += 1
        for chunk in chunks:
            if any(run not in allowed for run in CJK.findall(chunk)):
                found.setdefault(chunk[:120], f"{name} {url}")
    assert rendered > (60 if role == "admin" else 10)
    assert found == {}, "untranslated on English pages:\n" + "\n".join(f"  {v}: {k!r}" for k, v in sorted(found.items(),
                                                                                                         key=str))


PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{[^}]*\}|<[^>]+>|%%")
WORDS = re.compile(r"[A-Za-z][A-Za-z'’-]*")


def english_ui_phrases() -> list[str]:
    """Phrases of two words or more from the English catalogue's msgstrs (split at placeholders and markup) that
    no Chinese msgid contains: where the Chinese UI shows one, it shows an English UI string."""
    with (ROOT / "locale/en/LC_MESSAGES/django.po").open("rb") as f:
        catalog = read_po(f)
    sources, phrases = [], set()
    for m in catalog:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        sources.extend(ids)
        for string in m.string if isinstance(m.string, tuple) else (m.string,):
            for part in PLACEHOLDER.split(string or ""):
                for fragment in re.split(r"[.:;,!?()“”\"…·/|=→←+×÷\[\]]", part):
                    fragment = fragment.strip(" -–—'")
                    if len(WORDS.findall(fragment)) >= 2 and WORDS.fullmatch(fragment.split()[0]):
                        phrases.add(fragment)
    haystack = "\n".join(sources).lower()
    return sorted((p for p in phrases if p.lower() not in haystack), key=len, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "advisor"])
def test_chinese_pages_have_no_english_ui_words(client, data, role):
    phrases = english_ui_phrases()
    assert len(phrases) > 500
    pattern = re.compile(r"(?<![A-Za-z])(?:" + "|".join(re.escape(p) for p in phrases) + r")(?![A-Za-z])")
    found, rendered = {}, 0
    for name, url, chunks in _render(client, data[role], "zh-hans", data["pages"]):
        rendered += 1
        for chunk in chunks:
            for match in pattern.finditer(chunk):
                found.setdefault(match.group(), f"{name} {url}: {chunk[:120]!r}")
    assert rendered > (60 if role == "admin" else 10)
    assert found == {}, "English on Chinese pages:\n" + "\n".join(f"  {k!r} in {v}" for k, v in sorted(found.items()))
