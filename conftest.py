"""Shared fixtures: staff per role, a real Celery worker, a real browser.

The suite runs on the PostgreSQL and Redis the settings give (embedded ones when
DATABASE_URL/REDIS_URL are unset, see scrm/embedded.py).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# around it are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "test-artifacts"


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for a Django settings dict (used to point subprocesses at the test database)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or ""
    port = settings_dict.get("PORT") or ""
    name = settings_dict["NAME"]
    if host.startswith("/"):
        return f"postgres://{auth}/{name}?host={host}"
    return f"postgres://{auth}{host}{':' + str(port) if port else ''}/{name}"


def subprocess_env(**extra) -> dict:
    """Environment for a child process that talks to this test session's database and Redis."""
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="scrm.settings",
        SCRM_ENV="test",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- staff -------------------------------------------------------------------------------

@pytest.fixture
def make_staff(db):
    from core.models import Branch
    from core.services import staff_upsert

    def make(username, role, branch_code=None, **kwargs):
        branch = None
        if branch_code:
            branch, _ = Branch.objects.get_or_create(code=branch_code, defaults={"name": f"{branch_code} 营业部"})
        return staff_upsert(username=username, password="correct-horse-42", role=role, branch=branch,
                            display_name=kwargs.pop("display_name", username), **kwargs)

    return make


@pytest.fixture
def advisor(make_staff):
    return make_staff("advisor_a", "advisor", "BJ01", employee_code="E9001")


@pytest.fixture
def other_branch_advisor(make_staff):
    return make_staff("advisor_other", "advisor", "SH01", employee_code="E9002")


@pytest.fixture
def same_branch_advisor(make_staff):
    return make_staff("advisor_b", "advisor", "BJ01", employee_code="E9003")


@pytest.fixture
def branch_manager(make_staff):
    return make_staff("manager_a", "branch_manager", "BJ01", employee_code="M9001")


@pytest.fixture
def other_branch_manager(make_staff):
    return make_staff("manager_other", "branch_manager", "SH01", employee_code="M9002")


@pytest.fixture
def hq_manager(make_staff):
    return make_staff("hq_a", "hq_manager", employee_code="H9001")


@pytest.fixture
def operator(make_staff):
    return make_staff("operator_a", "operator", employee_code="O9001")


@pytest.fixture
def compliance(make_staff):
    return make_staff("compliance_a", "compliance", employee_code="C9001")


@pytest.fixture
def admin_user(make_staff):
    return make_staff("admin_a", "admin", employee_code="A9001")


# --- one clock --------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _database_clock_agrees(django_db_setup, django_db_blocker):
    """The product stamps rows with PostgreSQL's now() and reads them with Python's: a run whose database keeps
    another clock (an embedded server left running by an interrupted run, joined by a run under libfaketime)
    fails in many places for no reason of its own. Stop at once and say so instead."""
    from django.db import connection
    from django.utils import timezone

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        database_now = cursor.fetchone()[0]
    skew = abs((database_now - timezone.now()).total_seconds())
    if skew > 60:
        pytest.exit(f"PostgreSQL's clock is {skew:.0f} s away from this process's ({database_now} vs {timezone.now()}): "
                    "a server from another run (or not under the same FAKETIME) is being reused. Stop it, or remove "
                    "the data dir (SCRM_DATA_DIR), and run again.", returncode=3)


# --- a real Celery worker ------------------------------------------------------------------

@pytest.fixture(scope="session")
def worker_receiver_port():
    """The one local port the session's worker may send webhooks to: its OUTBOUND_ALLOWLIST names
    127.0.0.1:<this port> and nothing else (core/outbound.py refuses local addresses otherwise)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, worker_receiver_port):
    """A real worker process over the real broker, on the test database (use with transactional_db).
    A test receiver it should reach binds ``worker_receiver_port``."""
    from scrm.celery import app

    with django_db_blocker.unblock():
        env = subprocess_env(OUTBOUND_ALLOWLIST=f"127.0.0.1:{worker_receiver_port}")
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "celery-worker.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "scrm", "worker", "-Q", "celery,webhooks", "-l", "INFO", "-c", "2",
         "-n", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5, destination=[f"test-{os.getpid()}@{os.uname().nodename}"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the test Celery worker did not start; see {log.name}")
    yield proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# --- the local WeCom sandbox (integrations/wecom/sandbox.py) ----------------------------------
# ``wecom_sandbox``: on a free port, with settings.WECOM_* pointing at it; yields the WecomSandbox
# (``.url``, ``.admin("contacts", {...})``, ``.state()``, ``.reseed_from_db()`` to rebuild its corp from
# the customers and advisors the test made, and its data ``.contacts``, ``.follows``, ``.groupchats`` …).
# ``wecom_sandbox_callbacks``: the same, pushing its callbacks to ``<live_server>/integrations/wecom/callback/``.
# The session-wide ``celery_worker`` does not see these per-test settings: call task bodies directly.

@pytest.fixture
def wecom_sandbox(settings):
    from integrations.wecom import sandbox as wecom_sandbox_module
    from integrations.wecom.sandbox_seed import sandbox_seed_from_db

    sandbox, server = wecom_sandbox_module.sandbox_serve()
    settings.WECOM_API_BASE_URL = sandbox.url
    settings.WECOM_CORP_ID = sandbox.corp_id
    settings.WECOM_SECRET = sandbox.secret
    settings.WECOM_CALLBACK_TOKEN = sandbox.token
    settings.WECOM_CALLBACK_AES_KEY = sandbox.aes_key

    def reseed_from_db(customers: int = 300) -> dict:
        seed = sandbox_seed_from_db(customers=customers)
        sandbox.reset(seed)
        return seed

    sandbox.reseed_from_db = reseed_from_db
    yield sandbox
    server.shutdown()
    server.server_close()


@pytest.fixture
def wecom_sandbox_callbacks(wecom_sandbox, live_server):
    wecom_sandbox.callback_url = f"{live_server.url}/integrations/wecom/callback/"
    return wecom_sandbox


# --- a real browser ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is missing: run `make test` (it installs Debian's chromium) or apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed and "page" in item.funcargs:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            item.funcargs["page"].screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - the failure itself is what matters
            pass
    return report


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def login(page):
    """Log a staff member in through the real login form."""

    def do_login(user, password="correct-horse-42"):
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=nav]")
        return page

    return do_login


@pytest.fixture(autouse=True)
def _default_taxonomy(request):
    """Transactional tests flush the tables, data migrations included; put the defaults back."""
    if not any(name in request.fixturenames for name in ("db", "transactional_db", "live_server")):
        return
    request.getfixturevalue("transactional_db" if "live_server" in request.fixturenames else "db")
    import importlib

    from django.apps import apps

    from tagging.defaults import defaults_load

    if not apps.get_model("tagging", "Tag").objects.exists():
        defaults_load(apps.get_model)
        importlib.import_module("tagging.migrations.0003_default_conversation_rules").load(apps, None)
    if not apps.get_model("sop", "GuardPolicy").objects.exists():  # trading calendar, forbidden phrases, guards
        importlib.import_module("sop.migrations.0002_calendar_phrases_policy").seed(apps, None)
        importlib.import_module("sop.migrations.0004_compliance_wording_kinds").seed_disclosures(apps, None)
