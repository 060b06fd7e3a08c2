"""Important settings exist under the names their libraries read (a typo silently disables them)."""

import subprocess
import sys

import pytest
from django.conf import settings

from conftest import ROOT, subprocess_env
from scrm.celery import app


def test_celery_reads_our_reliability_settings():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT > 0
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit
    assert app.conf.timezone == "Asia/Shanghai"


def test_locale_and_time_zone():
    assert settings.LANGUAGE_CODE == "zh-hans"
    assert settings.TIME_ZONE == "Asia/Shanghai"
    assert settings.USE_TZ


def _django_check(env_extra, *args, db=True):
    env = subprocess_env(**env_extra) if db else None
    return subprocess.run([sys.executable, "manage.py", "check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.django_db
def test_production_refuses_debug_and_default_secret():
    debug = _django_check({"SCRM_ENV": "production", "DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": "x" * 60})
    assert debug.returncode != 0 and "DJANGO_DEBUG must be off" in debug.stderr
    env = {"SCRM_ENV": "production"}
    no_secret = _django_check(env | {"DJANGO_SECRET_KEY": ""})
    assert no_secret.returncode != 0 and "DJANGO_SECRET_KEY" in no_secret.stderr
    no_keys = _django_check(env | {"DJANGO_SECRET_KEY": "x" * 60, "SCRM_FIELD_KEYS": "", "SCRM_BLIND_INDEX_KEY": ""})
    assert no_keys.returncode != 0 and "SCRM_BLIND_INDEX_KEY" in no_keys.stderr


@pytest.mark.django_db
def test_check_deploy_is_clean_under_production_settings():
    result = _django_check(
        {"SCRM_ENV": "production", "DJANGO_SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789" * 2,
         "DJANGO_ALLOWED_HOSTS": "scrm.example.com", "SCRM_FIELD_KEYS": "aGVsbG8taGVsbG8taGVsbG8taGVsbG8taGVsbG8tMDE=",
         "SCRM_BLIND_INDEX_KEY": "blind-" + "k" * 40},
        "--deploy", "--fail-level", "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"beat entry {name} names an unknown task {entry['task']}"


def test_webhook_work_never_takes_a_slot_sop_sends_need():
    from scrm.celery import app

    def queue(task):
        return (app.amqp.router.route({}, task) or {}).get("queue").name

    assert queue("integrations.webhook_deliver") == queue("integrations.webhook_dispatch_due") == "webhooks"
    assert queue("sop.tick") != "webhooks" and queue("sop.execute_batch") != "webhooks"
