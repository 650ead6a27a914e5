"""Settings for the gateway, every value from an environment variable.

With nothing set, the embedded default needs nothing installed: SQLite and
generated secrets in DATA_DIR, and the in-memory channel layer.
"""

from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_int, env_list, env_str, secret_in_file

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_str("DATABASE_URL")
EMBEDDED = not DATABASE_URL

# A shared deployment must not invent its own secrets per worker, or workers
# could not read each other's sessions and encrypted credentials.
if EMBEDDED:
    SECRET_KEY = env_str("SECRET_KEY") or secret_in_file(DATA_DIR / "secret_key")
    _secret_keys = env_str("REMOTE_ACCESS_SECRET_KEY") or secret_in_file(
        DATA_DIR / "remote_access_secret_key", lambda: Fernet.generate_key().decode()
    )
else:
    SECRET_KEY = env_str("SECRET_KEY")
    _secret_keys = env_str("REMOTE_ACCESS_SECRET_KEY")
    for _name, _value in (("SECRET_KEY", SECRET_KEY), ("REMOTE_ACCESS_SECRET_KEY", _secret_keys)):
        if not _value:
            raise ImproperlyConfigured(f"{_name} must be set when DATABASE_URL is set")

# Several comma-separated keys: the first encrypts, all decrypt, so a key can
# be rotated without a moment in which stored secrets are unreadable.
REMOTE_ACCESS_SECRET_KEYS = [key.strip() for key in _secret_keys.split(",") if key.strip()]
for _key in REMOTE_ACCESS_SECRET_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "REMOTE_ACCESS_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes), "
            "comma-separated; make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None

# Writers queue for the lock instead of failing at once when several
# processes or threads share the file.
SQLITE_OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 20}
if EMBEDDED:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
        }
    }
else:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times out reads after 5 s by default, which kills the
            # layer's blocking receive on every idle channel.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    # Shared by the workers, so a lock-out (portal/throttle.py) holds on all.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "guardian",
    "portal",
    "endpoints",
    "sessions.apps.RemoteSessionsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No guardian "AnonymousUser" row: anonymous visitors get nothing anyway.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "device-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
# Only a deployment that runs collectstatic needs it; `make run` serves from the finders.
STATIC_ROOT = env_str("STATIC_ROOT") or None
NODE_MODULES = BASE_DIR / "node_modules"
# Front-end libraries come from npm (package.json), never copied into the repo.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/xterm", NODE_MODULES / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", NODE_MODULES / "@xterm" / "addon-fit"),
    ("vendor/novnc", NODE_MODULES / "@novnc" / "novnc"),
]
# Serve straight from the finders, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Over plain HTTP on loopback the cookies never leave the machine, so the
# embedded default (`make run` on 127.0.0.1) can log in without TLS; anywhere
# else they are only sent over HTTPS.
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
SECURE_COOKIES = env_bool(
    "SECURE_COOKIES", not DEBUG and not set(ALLOWED_HOSTS) <= _LOOPBACK_HOSTS
)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Remote access
REMOTE_ACCESS_CONNECTION_KEY_TTL = env_int("REMOTE_ACCESS_CONNECTION_KEY_TTL", 60, minimum=5)
REMOTE_ACCESS_PING_INTERVAL = env_int("REMOTE_ACCESS_PING_INTERVAL", 30, minimum=5)
REMOTE_ACCESS_OTP_TTL_HOURS = env_int("REMOTE_ACCESS_OTP_TTL_HOURS", 24, minimum=1)
# The HTTPS listener's certificate; empty: self-signed, made in DATA_DIR.
TLS_CERT_FILE = env_str("TLS_CERT_FILE")
TLS_KEY_FILE = env_str("TLS_KEY_FILE")
# Cumulocity's clients (c8ylp) ask for a tenant; this server has one.
TENANT_ID = env_str("TENANT_ID", "t1")
# The ASGI server of `manage.py serve`: uvicorn, or daphne (see portal/asgi_servers.py).
ASGI_SERVER = env_str("ASGI_SERVER", "uvicorn")
if ASGI_SERVER not in {"daphne", "uvicorn"}:
    raise ImproperlyConfigured("ASGI_SERVER must be daphne or uvicorn")
TERMINAL_SCROLLBACK = env_int("TERMINAL_SCROLLBACK", 5000, minimum=0, maximum=100_000)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact_url_secrets": {"()": "portal.redact.RedactUrlSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["redact_url_secrets"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
