"""The one settings module. Every behaviour is switched by environment variables.

Nothing is inferred from a missing variable: the embedded defaults used by
``make run`` (SQLite, in-process tasks) are chosen explicitly by that command
through ``DATABASE_URL`` and ``TASKS_IN_PROCESS``.
"""

from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"The setting {name} is required (set the environment variable {name}); "
            "see README.md, 'Running in production'."
        )
    return value


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or (
    "dev-only-insecure-key" if DEBUG else _required("DJANGO_SECRET_KEY")
)
# Keyed hash for identifiers that must outlive an erasure (docs/CONTRACT.md).
VISITOR_HASH_KEY = env.str("VISITOR_HASH_KEY", default="") or (
    "dev-only-visitor-hash-key" if DEBUG else _required("VISITOR_HASH_KEY")
)

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "consent",
    "personalization",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files compressed (gzip) with cache lifetimes of a year for hashed names; before
    # everything else, so a static file costs no session, CSRF or rate-limit work.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "personalization.security.headers.SecurityHeadersMiddleware",
    "personalization.api.cors.ApiCorsMiddleware",
    # Inside CORS: Django's own error pages under /api/ (the debug 404 …) become the JSON shape.
    "personalization.api.errors.ApiErrorShapeMiddleware",
    # After CORS, so a browser can read a 429's Retry-After.
    "personalization.security.ratelimit.RateLimitMiddleware",
    # Django's session, authentication and messages, for what people sign in to; requests
    # that authenticate by API key (/api/v1/, /ofrep/) skip them (api/middleware.py).
    "personalization.api.middleware.PageSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "personalization.api.middleware.PageAuthenticationMiddleware",
    "personalization.api.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Names the route for GPC evidence written inside services (consent/context.py).
    "consent.middleware.RequestRouteMiddleware",
    # Dashboard pages' reads on the read replica when there is one (personalization/db_router.py).
    "personalization.db_router.ReplicaReadsMiddleware",
]

ROOT_URLCONF = "personalization.urls"
WSGI_APPLICATION = "personalization.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(_required("DATABASE_URL"))}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several writers (the dev server, in-process tasks) share one file.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# A read replica of the PostgreSQL primary: dashboard pages read there (personalization/
# db_router.py). Tests mirror it onto the default test database.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = env.db_url_config(DATABASE_REPLICA_URL)
    DATABASES["replica"]["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["personalization.db_router.ReplicaRouter"]
DATABASE_REPLICA_PATHS = ("/dashboard/",)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Caches hold key lookups and compiled rule sets; Redis when given, per-process otherwise.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        # A copy of what the database holds: while Redis is away, reads miss and requests
        # read the database (personalization/cache.py); short timeouts keep that quick.
        "default": {
            "BACKEND": "personalization.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The decision engine's hot state (counters, session budgets, the pending decision log:
# personalization/hotstate/); "" keeps it in the database. Run this Redis with
# appendonly on: acknowledged decisions wait there for their flush.
DECIDE_REDIS_URL = env.str("DECIDE_REDIS_URL", default=REDIS_URL)

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic writes hashed, gzip-compressed copies; WhiteNoise serves them forever-cached.
    "staticfiles": {"BACKEND": "personalization.staticfiles.StaticStorage"},
}
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # dashboard/plotly.min.js: the plotly.js the installed plotly package ships (no CDN)
    "dashboard.finders.PlotlyFinder",
]
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
# Access-export archives: MEDIA_ROOT/PRIVACY_EXPORT_DIR/<property>/<token>.zip, never served
# as static media; downloaded through the officers' view, for this many hours.
PRIVACY_EXPORT_DIR = env.str("PRIVACY_EXPORT_DIR", default="privacy-exports")
PRIVACY_EXPORT_TTL_HOURS = env.int("PRIVACY_EXPORT_TTL_HOURS", default=7 * 24)
# Erasure deletes rows in batches of this size, each batch its own transaction.
PRIVACY_ERASE_BATCH = env.int("PRIVACY_ERASE_BATCH", default=1000)
# Fault tests only: a pause after each erasure batch and each exported store, so a test
# can kill a worker in the middle of a task. Always 0 in production.
PRIVACY_FAULT_PAUSE_SECONDS = env.float("PRIVACY_FAULT_PAUSE_SECONDS", default=0.0)
# The same for a dashboard rollup run (after each property's step) and a model training
# (between reading the log and fitting).
DASHBOARD_FAULT_PAUSE_SECONDS = env.float("DASHBOARD_FAULT_PAUSE_SECONDS", default=0.0)
LEARNING_FAULT_PAUSE_SECONDS = env.float("LEARNING_FAULT_PAUSE_SECONDS", default=0.0)
# And for a decision-log flush: after each batch's commit, before its entries leave Redis.
DECISION_LOG_FAULT_PAUSE_SECONDS = env.float("DECISION_LOG_FAULT_PAUSE_SECONDS", default=0.0)

LOGIN_URL = "admin:login"

# 500 events of a few KB each fit; anything larger is refused with 413 before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=5 * 1024 * 1024)

REST_FRAMEWORK = {
    # Deny by default: every view declares its authentication and permission.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["personalization.api.permissions.DenyAll"],
    "DEFAULT_PARSER_CLASSES": ["personalization.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "personalization.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Micro-adjustment platform API",
    "DESCRIPTION": "Storefront API: events, decisions, consent, surveys, privacy requests.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The API's contract is public documentation: declared open on purpose.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: one app, configured here. In-process execution only when asked for explicitly.
TASKS_IN_PROCESS = env.bool("TASKS_IN_PROCESS", default=False)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if not TASKS_IN_PROCESS and not CELERY_BROKER_URL:
    raise ImproperlyConfigured(
        "The setting CELERY_BROKER_URL is required (a Redis or RabbitMQ URL), "
        "unless TASKS_IN_PROCESS=1 explicitly asks for in-process task execution."
    )
# `make run`'s embedded broker (no Redis on a laptop): kombu's folder queue, one machine only.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue = Path(env.str("CELERY_BROKER_FOLDER", default=str(BASE_DIR / "var" / "broker")))
    _queue.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue),
        "data_folder_out": str(_queue),
        "control_folder": str(_queue / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = TASKS_IN_PROCESS
CELERY_TASK_EAGER_PROPAGATES = TASKS_IN_PROCESS
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "consent-retention-purge": {
        "task": "consent.tasks.retention_purge_task",
        "schedule": crontab(hour=3, minute=15),
    },
    "consent-exports-expire": {
        "task": "consent.tasks.exports_expire_task",
        "schedule": crontab(minute=5),
    },
    "experiment-snapshots": {
        "task": "personalization.tasks.experiment_snapshots_task",
        "schedule": crontab(minute=0),
    },
    "rollout-guardrails": {
        "task": "personalization.tasks.rollout_guardrails_task",
        "schedule": crontab(minute="*/15"),
    },
    "learning-scheduled": {
        "task": "personalization.tasks.learning_scheduled_task",
        "schedule": crontab(hour=4, minute=0),
    },
    "rule-guardrails": {
        "task": "personalization.tasks.rule_guardrails_task",
        "schedule": crontab(minute=20),
    },
    # Decisions acknowledged from Redis reach the database within seconds (engine hot state).
    "decision-log-flush": {
        "task": "personalization.tasks.decision_log_flush_task",
        "schedule": 5.0,
    },
    "dashboard-rollups": {
        "task": "dashboard.tasks.dashboard_rollups_task",
        "schedule": crontab(minute="*/10"),
    },
    "dashboard-retention": {
        "task": "dashboard.tasks.dashboard_retention_task",
        "schedule": crontab(hour=2, minute=40),
    },
}

# Dashboards: a goal event without a decision id counts for an adjustment this many
# seconds after it (per slot: dashboard.AttributionWindow); incremental rollups fold in
# input stamped up to this many hours late (older input waits for `dashboard_rollup --full`).
DASHBOARD_ATTRIBUTION_WINDOW = env.int("DASHBOARD_ATTRIBUTION_WINDOW", default=30 * 60)
DASHBOARD_LATE_EVENTS_HOURS = env.int("DASHBOARD_LATE_EVENTS_HOURS", default=72)

# The demo storefront at /demo/ (personalization/demo.py) issues a publishable key of the demo
# property to whoever opens it: for a laptop (`make run` turns it on), never for production.
DEMO_ENABLED = env.bool("DEMO_ENABLED", default=False)

# Event ingestion.
EVENTS_MAX_BATCH = 500
EVENTS_MAX_FUTURE_SECONDS = 300
SESSION_TIMEOUT_SECONDS = 30 * 60

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if not SECURE_SSL_REDIRECT:
        # The proxy in front terminates TLS and redirects http to https (README, "Security");
        # the benchmarks' gunicorn serves plain http on loopback.
        SILENCED_SYSTEM_CHECKS = ["security.W008"]

# Security headers, rate limits and the admin login's lockout (personalization/security/).
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
RATELIMIT_REDIS_URL = env.str("RATELIMIT_REDIS_URL", default=REDIS_URL)
# The storefront API and OpenFeature's OFREP endpoints (personalization/api/ofrep.py).
RATELIMIT_PATH_PREFIXES = ("/api/", "/ofrep/")
RATELIMIT_WINDOW_SECONDS = env.int("RATELIMIT_WINDOW_SECONDS", default=60)
# Requests per window; 0 switches a limit off. A publishable key serves every visitor of a
# storefront, so its limit is high; an address is one browser or one server.
RATELIMIT_PER_KEY = env.int("RATELIMIT_PER_KEY", default=60000)
RATELIMIT_PER_ADDRESS = env.int("RATELIMIT_PER_ADDRESS", default=6000)
# A header set by the trusted proxy with the client's address (e.g. HTTP_X_REAL_IP).
RATELIMIT_CLIENT_ADDRESS_HEADER = env.str("RATELIMIT_CLIENT_ADDRESS_HEADER", default="REMOTE_ADDR")
RATELIMIT_REDIS_TIMEOUT = 0.25
RATELIMIT_REDIS_RETRY_SECONDS = 5
LOGIN_LOCKOUT_FAILURES = env.int("LOGIN_LOCKOUT_FAILURES", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
LOGIN_LOCKOUT_ADDRESS_FAILURES = env.int("LOGIN_LOCKOUT_ADDRESS_FAILURES", default=30)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # An expected refusal (4xx) is one line, without the traceback Django attaches to some.
    "filters": {"client_errors_concise": {"()": "personalization.logs.ClientErrorsConcise"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["client_errors_concise"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's own handlers (a console in DEBUG) printed each record a second time.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
