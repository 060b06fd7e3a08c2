"""The English catalogue is complete, and stays so: a string added in code but never extracted fails here too."""

import os
import shutil
from pathlib import Path

from babel.messages.pofile import read_po
from django.core.management import call_command

from conftest import ROOT

PO = "locale/en/LC_MESSAGES/django.po"
# what the Makefile's `messages` target passes as --ignore (makemessages itself skips dot-directories)
MAKEMESSAGES_IGNORE = [".venv", "node_modules", ".data"]
# the extensions makemessages reads for the "django" domain by default
SOURCE_SUFFIXES = (".py", ".html", ".txt")


def _missing(path):
    with open(path, "rb") as f:
        catalog = read_po(f)
    untranslated = [m.id for m in catalog if m.id and not (m.string[0] if isinstance(m.string, tuple) else m.string)]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    return untranslated, fuzzy


def test_every_english_string_is_translated():
    untranslated, fuzzy = _missing(ROOT / PO)
    assert untranslated == []
    assert fuzzy == []
    # the header keeps its plural rule (a catalogue rewritten without a locale loses it, and msgfmt refuses the file)
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in (ROOT / PO).read_text()


def test_catalogue_is_not_stale(tmp_path, monkeypatch, settings):
    """Re-extract the messages the way `make messages` does and check that nothing comes out untranslated or fuzzy.

    makemessages rewrites the catalogue it finds (and writes templatized ``*.html.py`` files next to the templates),
    so it runs on a copy of the sources and of the .po in a temporary directory: the working tree is never written,
    even when the test is interrupted or other work edits the catalogue meanwhile."""
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = Path(dirpath).relative_to(ROOT)
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and (rel_dir != Path(".") or d not in MAKEMESSAGES_IGNORE)]
        for name in filenames:
            if name.endswith(SOURCE_SUFFIXES):
                (tmp_path / rel_dir).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(dirpath) / name, tmp_path / rel_dir / name)
    (tmp_path / PO).parent.mkdir(parents=True)
    shutil.copyfile(ROOT / PO, tmp_path / PO)
    monkeypatch.chdir(tmp_path)
    settings.LOCALE_PATHS = [tmp_path / "locale"]

    call_command("makemessages", locale=["en"], ignore_patterns=MAKEMESSAGES_IGNORE, no_obsolete=True, verbosity=0)

    untranslated, fuzzy = _missing(tmp_path / PO)
    hint = "run `make messages`, translate what it adds to locale/en/LC_MESSAGES/django.po and compile"
    assert untranslated == [], f"strings in code missing from the catalogue ({hint}): {untranslated}"
    assert fuzzy == [], f"strings in code whose translation is only a fuzzy guess ({hint}): {fuzzy}"
