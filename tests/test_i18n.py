from babel.messages.pofile import read_po

from conftest import ROOT


def test_every_english_string_is_translated():
    catalog = read_po((ROOT / "locale/en/LC_MESSAGES/django.po").open("rb"))
    untranslated = [m.id for m in catalog if m.id and not (m.string[0] if isinstance(m.string, tuple) else m.string)]
    assert untranslated == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]
