"""GPUBROKER settings: one file, driven by the environment through `web.config`.

Every variable is listed in README.md. A bad value stops start-up with one line naming it.
"""

import os
from pathlib import Path

from web.config import LIVE, ConfigError, env_int, env_seconds, load_config

BASE_DIR = Path(__file__).resolve().parent.parent
CONFIG = load_config(os.environ, BASE_DIR)

GPUBROKER_MODE = CONFIG.mode
DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins
BASE_URL = CONFIG.base_url

INSTALLED_APPS = [
    "daphne",  # before staticfiles: `runserver` serves ASGI (websockets included)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    # Loaders and builtins are configured below by hand, so both apps use their plain configs.
    "django_cotton.apps.SimpleAppConfig",
    "template_partials.apps.SimpleAppConfig",
    "channels",
    "ninja",  # serves the API docs' assets locally instead of from a CDN
    "web",
    "providers",
    "allauth",
    "allauth.account",
    "billing",
    "pods",
]

MIDDLEWARE = [
    "web.metrics.LatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before everything that does work: a request over its plan's rate costs one Redis round trip.
    "web.ratelimit.RateLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "web.urls"
ASGI_APPLICATION = "web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "loaders": [
                (
                    "template_partials.loader.Loader",
                    [
                        (
                            "django.template.loaders.cached.Loader",
                            [
                                "django_cotton.cotton_loader.Loader",
                                "django.template.loaders.filesystem.Loader",
                                "django.template.loaders.app_directories.Loader",
                            ],
                        )
                    ],
                )
            ],
            "builtins": ["django_cotton.templatetags.cotton", "template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "web.context_processors.platform",
                "web.context_processors.navigation",
                "billing.context_processors.plan",
            ],
        },
    }
]

DATABASES = {"default": CONFIG.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache and channel layer: Redis when REDIS_URL is set (shared by every instance and the worker),
# otherwise per-process memory (the embedded default of `make run`).
REDIS_URL = CONFIG.redis_url
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis, with this process's memory standing in while Redis is down (web.fallback_cache).
            "BACKEND": "web.fallback_cache.FallbackRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gpubroker",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Each server process reads one channel per group it serves (providers.fanout): a
            # burst must queue there, not be dropped at the default capacity of 100.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "gpubroker", "channel_capacity": {"fanout.*": 10_000}},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "gpubroker"}}
    # Only the fan-out hub's channels live here (channel_capacity patterns are not compiled by
    # this layer in channels 4.3, so the capacity is set for all).
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}

# Live updates (providers.fanout), per server process: sockets one client address may hold (IPv6 by
# /64), sockets in all, and messages a socket may have waiting before it is cut off as too slow.
WS_MAX_CONNECTIONS_PER_ADDRESS = env_int(os.environ, "WS_MAX_CONNECTIONS_PER_ADDRESS", 20, minimum=1)
WS_MAX_CONNECTIONS = env_int(os.environ, "WS_MAX_CONNECTIONS", 20_000, minimum=1)
WS_QUEUE_MESSAGES = env_int(os.environ, "WS_QUEUE_MESSAGES", 256, minimum=1)

# Without Redis the in-memory channel layer cannot cross processes, so the worker (provider
# refreshes, health checks, events) runs inside the server process; with Redis `run_worker` does.
EMBEDDED_WORKER = not REDIS_URL and CONFIG.mode != LIVE
# Server processes `manage.py serve` starts (WEB_CONCURRENCY): one per core with Redis, else one.
WEB_CONCURRENCY = CONFIG.web_concurrency
# The ASGI fast path for repeated anonymous cached reads (web.fastpath); off only to measure without it.
FASTPATH_ENABLED = os.environ.get("GPUBROKER_FASTPATH", "1").strip().lower() not in ("0", "false", "no", "off")
# Plan-tier API rate limits (web.ratelimit): the multiplier relaxes every plan's rate in sandbox.
RATE_LIMIT_ENABLED = CONFIG.rate_limit_enabled
RATE_LIMIT_MULTIPLIER = CONFIG.rate_limit_multiplier
# Seconds between refreshes of one sandbox provider (live providers: every 60 s).
SANDBOX_REFRESH_SECONDS = env_seconds(os.environ, "SANDBOX_REFRESH_SECONDS", 10.0)
# How long one server-sent events stream stays open before the client reconnects.
SSE_MAX_SECONDS = env_seconds(os.environ, "SSE_MAX_SECONDS", 3600.0)

# Provider adapters (providers/adapters/): credentials per provider from the environment, empty
# when unset; live mode calls the real APIs with them. <SLUG>_API_BASE points an adapter at another
# server (a local stand-in in tests or a sandbox). Never logged: adapters blank them out of errors.
PROVIDER_CREDENTIALS = {
    "aws": {
        "access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "session_token": os.environ.get("AWS_SESSION_TOKEN", ""),
    },
    "azure": {},  # the Retail Prices API is public
    "hyperbolic": {"api_key": os.environ.get("HYPERBOLIC_API_KEY", "")},
    "lambda": {"api_key": os.environ.get("LAMBDA_API_KEY", "")},
    "paperspace": {"api_key": os.environ.get("PAPERSPACE_API_KEY", "")},
    "runpod": {"api_key": os.environ.get("RUNPOD_API_KEY", "")},
    "tensordock": {"api_key": os.environ.get("TENSORDOCK_API_KEY", "")},
    "vast": {"api_key": os.environ.get("VAST_API_KEY", "")},
}
PROVIDER_API_BASES = {
    slug: base for slug in PROVIDER_CREDENTIALS if (base := os.environ.get(f"{slug.upper()}_API_BASE", "").strip())
}
for _slug, _base in PROVIDER_API_BASES.items():
    if not _base.startswith(("http://", "https://")):
        raise ConfigError(f"{_slug.upper()}_API_BASE", f"{_base!r} must start with http:// or https://")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Accounts (django-allauth): email + password, activation by a link that signs the user in.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "web.accounts.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False  # a GET (a link scanner) changes nothing: the page's button confirms
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 3
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "GPUBROKER: "
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
# allauth's limits (counted in the cache, so shared through Redis); stated here to be visible.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/300s/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/180s/key",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
}
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "landing"

# Stripe keys per mode; billing.gateway refuses a key of the wrong mode with a clear message.
# SANDBOX without STRIPE_TEST_SECRET_KEY uses the bundled emulator at STRIPE_EMULATOR_URL.
for _name in ("SECRET_KEY", "PUBLISHABLE_KEY", "WEBHOOK_SECRET"):
    for _mode in ("TEST", "LIVE"):
        globals()[f"STRIPE_{_mode}_{_name}"] = os.environ.get(f"STRIPE_{_mode}_{_name}", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
STRIPE_EMULATOR_URL = os.environ.get("STRIPE_EMULATOR_URL", "http://127.0.0.1:12111")
STRIPE_EMULATOR_WEBHOOK_SECRET = os.environ.get("STRIPE_EMULATOR_WEBHOOK_SECRET", "")
STRIPE_PORTAL = os.environ.get("STRIPE_PORTAL", "")
STRIPE_MAX_NETWORK_RETRIES = env_int(os.environ, "STRIPE_MAX_NETWORK_RETRIES", 2)
BILLING_GRACE_DAYS = env_int(os.environ, "BILLING_GRACE_DAYS", 7)
# Pods: the platform's markup on the provider's price, the pod-ready link's lifetime, the
# rentals loop's tick, and how fast the sandbox cloud boots (1 = its realistic 20-65 s).
POD_MARKUP_PERCENT = env_int(os.environ, "POD_MARKUP_PERCENT", 10)
POD_ACTIVATION_LINK_HOURS = env_int(os.environ, "POD_ACTIVATION_LINK_HOURS", 24, minimum=1)
POD_TICK_SECONDS = env_seconds(os.environ, "POD_TICK_SECONDS", 1.0)
SANDBOX_PROVISION_TIME_SCALE = env_seconds(os.environ, "SANDBOX_PROVISION_TIME_SCALE", 1.0)
# SANDBOX mail sink's store, read by /sandbox/mailbox/.
SANDBOX_MAILBOX_DIR = Path(os.environ.get("SANDBOX_MAILBOX_DIR", "") or BASE_DIR / "var" / "mailbox")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
if CONFIG.is_live:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
else:
    # Sandbox serves straight from the source folders: no collectstatic step before `make run`.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = DEBUG

# Email: EMAIL_URL (sandbox default: the local mail sink that `make run` starts).
for _key, _value in CONFIG.email.items():
    globals()[_key] = _value
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "GPUBROKER <no-reply@gpubroker.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Security (Django's deployment checklist). Cookies are HttpOnly where JavaScript has no need.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if CONFIG.is_live:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = CONFIG.secure_ssl_redirect
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
# /metrics: scrapers send `Authorization: Bearer $METRICS_TOKEN`; unset, only this machine and staff.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if CONFIG.is_live and METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ConfigError("METRICS_TOKEN", "too short for live mode; use at least 24 random characters")
# DEBUG error pages hide every secret: CONFIG, URL passwords, credentials (web/redaction.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "web.redaction.SecretsFilter"
# Trusted proxies (FORWARDED_ALLOW_IPS): uvicorn takes the client address and scheme from
# X-Forwarded-For / X-Forwarded-Proto only when the peer is one of them (web.serving), so the
# rate limiter and request.is_secure() see the same truth; no SECURE_PROXY_SSL_HEADER, which
# Django would believe from any peer.
FORWARDED_ALLOW_IPS = CONFIG.forwarded_allow_ips
# /health is probed by load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "gpubroker": {"level": "DEBUG" if CONFIG.mode != LIVE else "INFO", "propagate": True},
        "daphne": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},  # the SDK logs every request at INFO
    },
}
