"""Settings for the portal, the worker and beat: every value comes from the environment.

With no variables set the product runs embedded: SQLite, a filesystem Celery broker, the local
runtime. The README lists every variable.
"""

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url

from portal.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "embedded-default-secret-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

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
    "endpoints",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

# Uploads: the largest model artifact accepted, in bytes.
MODEL_UPLOAD_MAX_BYTES = env_int("MODEL_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

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
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "endpoints.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model endpoint portal API",
    "DESCRIPTION": "Register scikit-learn model versions, deploy them to endpoints, manage API keys.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
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
    "reconcile-deployments": {
        "task": "worker.reconcile",
        "schedule": env_float("RECONCILE_INTERVAL_SECONDS", 60.0),
    },
    "expire-keys": {
        "task": "worker.expire_keys",
        "schedule": env_float("KEY_EXPIRY_INTERVAL_SECONDS", 3600.0),
    },
}

# Deployments.
RUNTIME = env_str("RUNTIME", "local")
DEPLOY_CLAIM_SECONDS = env_int("DEPLOY_CLAIM_SECONDS", 600)

# Local runtime: serving processes on this machine.
LOCAL_RUNTIME_DIR = Path(env_str("LOCAL_RUNTIME_DIR", str(VAR_DIR / "runtime")))
LOCAL_RUNTIME_HOST = env_str("LOCAL_RUNTIME_HOST", "127.0.0.1")
LOCAL_RUNTIME_PUBLIC_HOST = env_str("LOCAL_RUNTIME_PUBLIC_HOST", LOCAL_RUNTIME_HOST)
LOCAL_RUNTIME_PORT_MIN = env_int("LOCAL_RUNTIME_PORT_MIN", 18100)
LOCAL_RUNTIME_PORT_MAX = env_int("LOCAL_RUNTIME_PORT_MAX", 18999)
LOCAL_RUNTIME_READY_TIMEOUT = env_float("LOCAL_RUNTIME_READY_TIMEOUT", 60.0)
LOCAL_RUNTIME_SERVING_WORKERS = env_int("LOCAL_RUNTIME_SERVING_WORKERS", 1)

# Google Cloud runtime (RUNTIME=gcp): Cloud Run, API Gateway, API Keys, Cloud Armor. Credentials
# come from Application Default Credentials. With RUNTIME=gcp a missing required value stops start-up.
GCP_PROJECT = env_str("GCP_PROJECT")
GCP_SERVING_IMAGE = env_str("GCP_SERVING_IMAGE")
GCP_ARTIFACT_BUCKET = env_str("GCP_ARTIFACT_BUCKET")
GCP_GATEWAY_SERVICE_ACCOUNT = env_str("GCP_GATEWAY_SERVICE_ACCOUNT")
GCP_LB_DOMAIN = env_str("GCP_LB_DOMAIN")
GCP_SERVICE_ACCOUNT_TEMPLATE = env_str(
    "GCP_SERVICE_ACCOUNT_TEMPLATE", "ep-{endpoint}@{project}.iam.gserviceaccount.com"
)
GCP_GATEWAY_REGION = env_str("GCP_GATEWAY_REGION", "us-central1")
GCP_API_ENDPOINT_OVERRIDES = env_str("GCP_API_ENDPOINT_OVERRIDES")
GCP_CALL_TIMEOUT_SECONDS = env_float("GCP_CALL_TIMEOUT_SECONDS", 30.0)
GCP_RETRY_ATTEMPTS = env_int("GCP_RETRY_ATTEMPTS", 3)
GCP_RETRY_INITIAL_SECONDS = env_float("GCP_RETRY_INITIAL_SECONDS", 1.0)
GCP_RATE_LIMIT_WAIT_SECONDS = env_float("GCP_RATE_LIMIT_WAIT_SECONDS", 30.0)
GCP_POLL_INTERVAL_SECONDS = env_float("GCP_POLL_INTERVAL_SECONDS", 2.0)
GCP_OPERATION_WAIT_SECONDS = env_float("GCP_OPERATION_WAIT_SECONDS", 20.0)
GCP_OPERATION_DEADLINE_SECONDS = env_float("GCP_OPERATION_DEADLINE_SECONDS", 1800.0)
GCP_ARMOR_PRIORITY_START = env_int("GCP_ARMOR_PRIORITY_START", 1000)
GCP_ARMOR_PRIORITY_END = env_int("GCP_ARMOR_PRIORITY_END", 1999)
if RUNTIME == "gcp":
    from worker.runtimes.gcp.config import check_settings

    check_settings(globals())

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

if not DEBUG and SECRET_KEY.startswith("embedded-default") and env_bool("PRODUCTION", False):
    raise RuntimeError("SECRET_KEY must be set when PRODUCTION=true")
