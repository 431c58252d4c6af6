"""Settings for the portal, the worker and beat: every value comes from the environment.

With no variables set the product runs embedded: SQLite, a filesystem Celery broker, the local
runtime. The README lists every variable.
"""

import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal import queue
from portal.env import env_bool, env_float, env_int, env_list, env_secret, env_str
from worker.runtimes.gcp import config as gcp_config  # imports nothing from Google
from worker.runtimes.kubernetes import config as kubernetes_config  # nor from Kubernetes

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

PRODUCTION = env_bool("PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)
if PRODUCTION:
    # Web, worker and beat run as separate processes, often on separate disks: a secret generated
    # into one container's VAR_DIR would differ from the next one's, so production names its own.
    missing = [name for name in ("SECRET_KEY", "KEY_SEALING_KEY") if not env_str(name)]
    if missing:
        raise ImproperlyConfigured(f"PRODUCTION=true needs {' and '.join(missing)} set in the environment")
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be false when PRODUCTION=true")

# Embedded: generated on first start into VAR_DIR (mode 0600) and reused.
SECRET_KEY = env_secret("SECRET_KEY", VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50))
# Seals an issued key's secret until its one reveal; its own key, so rotating SECRET_KEY loses none.
# Comma-separated Fernet keys: the first seals, every one opens (to rotate, put the new one first).
_sealing_keys = env_secret(
    "KEY_SEALING_KEY", VAR_DIR / "key_sealing_key", lambda: Fernet.generate_key().decode()
)
KEY_SEALING_KEYS = [key.strip() for key in _sealing_keys.split(",") if key.strip()]
for _sealing_key in KEY_SEALING_KEYS or [""]:
    try:
        Fernet(_sealing_key)
    except ValueError:
        raise ImproperlyConfigured(
            "KEY_SEALING_KEY must be comma-separated Fernet keys (32 url-safe base64-encoded bytes each)"
        ) from None
# How long an issued key waits for its one reveal; then its secret is erased and the key revoked.
KEY_REVEAL_WINDOW_HOURS = env_float("KEY_REVEAL_WINDOW_HOURS", 72.0)
if KEY_REVEAL_WINDOW_HOURS <= 0:
    raise ImproperlyConfigured("KEY_REVEAL_WINDOW_HOURS must be more than 0")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS. In production every cookie is Secure, plain HTTP is redirected and HSTS is sent. Behind a
# proxy that terminates TLS, SECURE_PROXY_SSL_HEADER names the header it sets (its value must be
# "https"); set it only when the proxy overwrites that header on every request.
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER")
if _proxy_header and not _proxy_header.startswith("HTTP_"):
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is a request.META name such as HTTP_X_FORWARDED_PROTO, "
        f"not {_proxy_header!r}"
    )
SECURE_PROXY_SSL_HEADER = (_proxy_header, "https") if _proxy_header else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Sessions end after SESSION_IDLE_SECONDS without a request from the person (the dashboard's
# polling does not count), and SESSION_MAX_AGE_SECONDS after log-in whatever happens.
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 3600)
SESSION_COOKIE_AGE = env_int("SESSION_MAX_AGE_SECONDS", 12 * 3600)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Content-Security-Policy, on in every mode so the browser tests run under it: scripts and styles
# only from our own static files (htmx and portal.js; Swagger UI from the sidecar's files).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Swagger UI's stylesheet draws its icons from data: URIs.
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "endpoints",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "endpoints.middleware.SessionIdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout found during sign-in into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if not env_str("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # A pooled connection is checked before each request reuses it: one left dead by a
        # database restart is replaced, not handed out.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web server read while the worker writes a deployment's journal.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: a locked-out user name or address is refused before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "endpoints:endpoint-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# WhiteNoise warns at start when STATIC_ROOT is missing; in development it serves from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads: the largest model artifact accepted, in bytes, counted while it streams in; and the
# most a skops file's zip members may expand to.
MODEL_UPLOAD_MAX_BYTES = env_int("MODEL_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)
MODEL_EXPANDED_MAX_BYTES = env_int("MODEL_EXPANDED_MAX_BYTES", 2 * 1024 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = ["endpoints.uploads.BoundedUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# The sandbox every uploaded artifact is loaded in (endpoints/sandbox/): its folder and its limits.
SANDBOX_DIR = Path(env_str("SANDBOX_DIR", str(VAR_DIR / "sandbox")))
SANDBOX_MEMORY_BYTES = env_int("SANDBOX_MEMORY_BYTES", 4 * 1024 * 1024 * 1024)
SANDBOX_CPU_SECONDS = env_int("SANDBOX_CPU_SECONDS", 300)
SANDBOX_WALL_SECONDS = env_int("SANDBOX_WALL_SECONDS", 600)
SANDBOX_FILE_BYTES = env_int("SANDBOX_FILE_BYTES", 2 * 1024 * 1024 * 1024)

# One cache every web worker shares: sign-in throttle and lockout counters live here. The embedded
# default is a table in the database (created by a migration); CACHE_URL=redis://... uses Redis.
CACHE_URL = env_str("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith(("redis://", "rediss://", "unix://"))
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "portal_cache"}
    )
}
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ValueError(f"CACHE_URL must be a redis://, rediss:// or unix:// URL, not {CACHE_URL!r}")

# Sign-in (dashboard, Django admin, POST /api/v1/auth/token/). The client address is REMOTE_ADDR,
# or with TRUSTED_PROXY_COUNT proxies in front the address the outermost of them saw
# (endpoints.client_address); X-Forwarded-For is ignored by default.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ValueError("TRUSTED_PROXY_COUNT must be 0 or more")
# Attempts one address, and one user name, may make; AUTH_TOKEN_RATE is its former name.
SIGN_IN_RATE = env_str("SIGN_IN_RATE", env_str("AUTH_TOKEN_RATE", "20/min"))
if not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", SIGN_IN_RATE):
    raise ValueError(f"SIGN_IN_RATE must look like 20/min (per s, min, hour or day), not {SIGN_IN_RATE!r}")
# django-axes: this many failed sign-ins for one user name, or from one address, lock it out.
AXES_FAILURE_LIMIT = env_int("LOCKOUT_FAILURES", 5)
LOCKOUT_MINUTES = env_int("LOCKOUT_MINUTES", 15)
if AXES_FAILURE_LIMIT < 1 or LOCKOUT_MINUTES < 1:
    raise ValueError("LOCKOUT_FAILURES and LOCKOUT_MINUTES must be 1 or more")
AXES_COOLOFF_TIME = timedelta(minutes=LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "default"
# Counters live in the cache, so axes' database tables stay empty: keep them out of Django admin.
# Unlock early with `manage.py axes_reset_username <name>` or `axes_reset_ip <address>`.
AXES_ENABLE_ADMIN = False
AXES_CLIENT_IP_CALLABLE = "endpoints.client_address.client_address"
AXES_LOCKOUT_CALLABLE = "endpoints.sign_in.lockout_response"
# A locked-out attempt is refused without counting, so a lock ends LOCKOUT_MINUTES after it began.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_COOLOFF_MESSAGE = (
    f"Too many failed sign-ins for this user name or from this address: sign-in is locked for "
    f"{LOCKOUT_MINUTES} minute{'' if LOCKOUT_MINUTES == 1 else 's'}. Try again later, or ask an admin "
    "to unlock it."
)
# Tokens for the REST API (django-rest-knox): stored as SHA-512 hashes, expiring.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 30)
if API_TOKEN_DAYS < 1:
    raise ValueError("API_TOKEN_DAYS must be 1 or more")
KNOX_TOKEN_MODEL = "endpoints.ApiToken"
# Knox's own migrations create its default token table even when the model is swapped out, and an
# unknown table holding a foreign key to users would stop `flush` on PostgreSQL: skip them.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_MODEL": KNOX_TOKEN_MODEL,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "endpoints.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "endpoints.api.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "endpoints.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model endpoint portal API",
    "DESCRIPTION": "Register scikit-learn model versions, deploy them to endpoints, manage API keys.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error answers share one body and one response per status (endpoints.api.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "endpoints.api.schema.error_responses",
    ],
    # Swagger UI's files come from the sidecar package's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# Celery: the embedded default is a filesystem broker, a real transport that needs no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(VAR_DIR / "broker" / "queue"),
        "data_folder_out": str(VAR_DIR / "broker" / "queue"),
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {"visibility_timeout": 3600}
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("data_folder_in", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[folder]).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 900)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 840)
CELERY_TASK_DEFAULT_QUEUE = "portal"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "relay-owed-tasks": {
        "task": queue.RELAY,
        "schedule": env_float("TASK_RELAY_SECONDS", 5.0),
    },
    "reconcile-deployments": {
        "task": queue.RECONCILE,
        "schedule": env_float("RECONCILE_INTERVAL_SECONDS", 60.0),
    },
    "expire-keys": {
        "task": queue.EXPIRE_KEYS,
        "schedule": env_float("KEY_EXPIRY_INTERVAL_SECONDS", 3600.0),
    },
    "scrape-traffic": {
        "task": queue.SCRAPE_TRAFFIC,
        "schedule": env_float("TRAFFIC_SCRAPE_SECONDS", 15.0),
        # A scrape that waited past the next one is dropped: the next counts what it would have.
        "options": {"expires": env_float("TRAFFIC_SCRAPE_SECONDS", 15.0)},
    },
    "prune-traffic": {
        "task": queue.PRUNE_TRAFFIC,
        "schedule": 3600.0,
    },
    "refresh-https-fronts": {
        "task": queue.REFRESH_FRONTS,
        "schedule": env_float("HTTPS_FRONT_REFRESH_SECONDS", 120.0),
    },
    "advance-rollouts": {
        "task": queue.ADVANCE_ROLLOUTS,
        "schedule": env_float("ROLLOUT_CHECK_SECONDS", 15.0),
        # A check that waited past the next one is dropped: the next judges the same window.
        "options": {"expires": env_float("ROLLOUT_CHECK_SECONDS", 15.0)},
    },
}

# Deployments.
RUNTIME = env_str("RUNTIME", "local")
# A worker holds a deployment (or other owed work) this long without a sign of life; a running
# deploy renews its claim every third of it, so a dead worker's deploy resumes within it.
DEPLOY_CLAIM_SECONDS = env_int("DEPLOY_CLAIM_SECONDS", 30)
# An owed task nobody has settled is sent again this long after it was sent, then at doubling
# intervals (at most 5 minutes): a lost message costs seconds, not a claim's lifetime.
TASK_RESEND_SECONDS = env_float("TASK_RESEND_SECONDS", 10.0)

# Endpoint traffic (the charts): the local runtime's scraper reads every serving process's counters
# this often into per-minute rollups kept this many days; with PROMETHEUS_URL the portal reads that
# Prometheus server instead (its HTTP API), and does not scrape.
TRAFFIC_SCRAPE_SECONDS = env_float("TRAFFIC_SCRAPE_SECONDS", 15.0)
TRAFFIC_RETENTION_DAYS = env_int("TRAFFIC_RETENTION_DAYS", 8)
PROMETHEUS_URL = env_str("PROMETHEUS_URL", "").rstrip("/")

# Progressive deploys: the defaults of a deploy's rollout (each may be given per deploy). Beat judges
# every rollout this often; a rollout starts at the first share, moves to the next every step if
# its revision is healthy over the window, and rolls back as soon as it is not.
ROLLOUT_CHECK_SECONDS = env_float("ROLLOUT_CHECK_SECONDS", 15.0)
ROLLOUT_STEPS = env_str("ROLLOUT_STEPS", "10,50,100")
ROLLOUT_STEP_SECONDS = env_int("ROLLOUT_STEP_SECONDS", 300)
ROLLOUT_WINDOW_SECONDS = env_int("ROLLOUT_WINDOW_SECONDS", 300)
ROLLOUT_MAX_ERROR_PERCENT = env_float("ROLLOUT_MAX_ERROR_PERCENT", 5.0)
ROLLOUT_MAX_P99_MS = env_int("ROLLOUT_MAX_P99_MS", 1000)
ROLLOUT_MIN_REQUESTS = env_int("ROLLOUT_MIN_REQUESTS", 50)

# Load tests from the dashboard (worker.load_test): the most users, users started per second and
# seconds a test may ask for; a test's process is killed this many seconds past its duration.
LOAD_TEST_MAX_USERS = env_int("LOAD_TEST_MAX_USERS", 50)
LOAD_TEST_MAX_SPAWN_RATE = env_int("LOAD_TEST_MAX_SPAWN_RATE", 10)
LOAD_TEST_MAX_SECONDS = env_int("LOAD_TEST_MAX_SECONDS", 120)
LOAD_TEST_GRACE_SECONDS = env_int("LOAD_TEST_GRACE_SECONDS", 30)

# Local runtime: serving processes on this machine.
LOCAL_RUNTIME_DIR = Path(env_str("LOCAL_RUNTIME_DIR", str(VAR_DIR / "runtime")))
LOCAL_RUNTIME_HOST = env_str("LOCAL_RUNTIME_HOST", "127.0.0.1")
LOCAL_RUNTIME_PUBLIC_HOST = env_str("LOCAL_RUNTIME_PUBLIC_HOST", LOCAL_RUNTIME_HOST)
LOCAL_RUNTIME_PORT_MIN = env_int("LOCAL_RUNTIME_PORT_MIN", 18100)
LOCAL_RUNTIME_PORT_MAX = env_int("LOCAL_RUNTIME_PORT_MAX", 18999)
LOCAL_RUNTIME_READY_TIMEOUT = env_float("LOCAL_RUNTIME_READY_TIMEOUT", 60.0)
LOCAL_RUNTIME_SERVING_WORKERS = env_int("LOCAL_RUNTIME_SERVING_WORKERS", 1)

# Google Cloud runtime (RUNTIME=gcp): Cloud Run, API Gateway, API Keys, Cloud Armor. Credentials
# come from Application Default Credentials. The GCP_* settings, their defaults and what each sets
# are listed once, in worker/runtimes/gcp/config.py (SETTINGS); each is read here from the
# environment. With RUNTIME=gcp a missing required value stops start-up.
_env_readers = {str: env_str, int: env_int, float: env_float}
for _setting in gcp_config.SETTINGS:
    globals()[_setting.name] = _env_readers[type(_setting.default)](_setting.name, _setting.default)
if RUNTIME == "gcp":
    gcp_config.check_settings(globals())

# Kubernetes runtime (RUNTIME=kubernetes): a Deployment, Service, autoscaler and access Secret per
# endpoint, through a kubeconfig (KUBERNETES_KUBECONFIG) or the in-cluster credentials. The
# KUBERNETES_* settings are listed once, in worker/runtimes/kubernetes/config.py (SETTINGS).
for _setting in kubernetes_config.SETTINGS:
    globals()[_setting.name] = _env_readers[type(_setting.default)](_setting.name, _setting.default)
if RUNTIME == "kubernetes":
    kubernetes_config.check_settings(globals())

# Keys.
API_KEY_DEFAULT_DAYS = env_int("API_KEY_DEFAULT_DAYS", 90)
API_KEY_MAX_DAYS = env_int("API_KEY_MAX_DAYS", 365)

# Demo data for the embedded start.
DEMO_ADMIN_USERNAME = env_str("DEMO_ADMIN_USERNAME", "admin")
DEMO_ADMIN_PASSWORD = env_str("DEMO_ADMIN_PASSWORD", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
