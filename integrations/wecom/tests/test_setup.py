"""What a brokerage configures for WeCom: the settings are read from the environment by the names the README
gives, beat syncs only when configured, and the README's setup section covers secret, callback URL and trusted IP."""

import json
import subprocess
import sys
from pathlib import Path

from django.urls import reverse

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["WECOM_API_BASE_URL", "WECOM_CORP_ID", "WECOM_SECRET", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY"]


def _settings_with(env: dict) -> dict:
    from conftest import subprocess_env

    code = ("import django, json; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n) for n in {NAMES!r}}} | "
            "{'beat': sorted(e['task'] for e in settings.CELERY_BEAT_SCHEDULE.values())}))")
    base = {k: v for k, v in subprocess_env().items() if not k.startswith("WECOM_")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settings_come_from_the_documented_environment_variables(django_db_setup, django_db_blocker):
    values = {"WECOM_API_BASE_URL": "https://wecom-proxy.broker.example", "WECOM_CORP_ID": "ww0123456789abcdef",
              "WECOM_SECRET": "s3cret", "WECOM_CALLBACK_TOKEN": "tok", "WECOM_CALLBACK_AES_KEY": "k" * 43}
    with django_db_blocker.unblock():
        configured = _settings_with(values)
        unconfigured = _settings_with({})
    assert {n: configured[n] for n in NAMES} == values
    assert "wecom.sync" in configured["beat"] and "wecom.sync" not in unconfigured["beat"]
    assert unconfigured["WECOM_API_BASE_URL"] == "https://qyapi.weixin.qq.com" and unconfigured["WECOM_CORP_ID"] == ""


def test_the_docs_walk_a_brokerage_through_the_wecom_setup():
    guide = (ROOT / "docs" / "wecom-setup.md").read_text()
    assert "docs/wecom-setup.md" in (ROOT / "README.md").read_text()
    setup = guide[guide.index("## What the brokerage sets up in WeCom"):guide.index("## The client")]
    for needed in [*NAMES, "Secret", "可信 IP", "60020", "EncodingAESKey", reverse("wecom:callback"), "可见范围"]:
        assert needed in setup, needed
