"""Reads GPUBROKER's configuration from the environment and refuses bad values at start-up.

Every problem is a `ConfigError` whose message names the variable and says what is wrong, in one
line; `manage.py` and `web/asgi.py` print that line and stop. Kept free of Django settings access
so tests can call `load_config` with any mapping.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

SANDBOX = "sandbox"
LIVE = "live"
MODES = (SANDBOX, LIVE)

DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
# Where `make run` starts the sandbox mail sink.
SANDBOX_EMAIL_URL = "smtp://127.0.0.1:1025"
# Sandbox relaxes every plan's API rate by this factor so a person clicking around never meets a
# 429; live enforces the plan limits as sold (product spec, "Modes").
DEFAULT_SANDBOX_RATE_MULTIPLIER = 10
# Database connections per server process (PostgreSQL pool, SQLite gate) and how long a request
# waits for one before it is answered 503: a few per core keep 2 cores busy without piling up.
DEFAULT_POOL_SIZE = 8
DEFAULT_POOL_TIMEOUT = 2.0
SQLITE_BOUNDED_ENGINE = "web.db.sqlite3"


# `scheme://user:password@` in any URL (database, Redis, SMTP): the password part is never shown.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s]*):[^@/\s]+@", re.IGNORECASE)
REDACTED = "********"


def redact_url(text: str) -> str:
    """`text` with the password of every URL in it replaced, e.g. redis://:********@host:6379/0."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
# Only a proxy on this machine is trusted to say who the client is, unless configured otherwise.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"


class ConfigError(ImproperlyConfigured):
    """A configuration variable has a bad value; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


@dataclass(frozen=True)
class Config:
    mode: str
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict[str, Any]
    redis_url: str | None
    email: dict[str, Any]
    secure_ssl_redirect: bool
    base_url: str
    rate_limit_enabled: bool = True
    rate_limit_multiplier: int = 1  # applied to every plan's requests per second
    web_concurrency: int = 1  # server processes `manage.py serve` starts
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's --forwarded-allow-ips).
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS

    @property
    def is_live(self) -> bool:
        return self.mode == LIVE

    def __repr__(self) -> str:
        # Shown by DEBUG error pages, `diffsettings` and tracebacks: what is configured, never a
        # secret (the key, the database and SMTP passwords, the password inside REDIS_URL).
        database = {k: v for k, v in self.database.items() if k != "PASSWORD"}
        email = {k: v for k, v in self.email.items() if "PASSWORD" not in k}
        return (
            f"Config(mode={self.mode!r}, debug={self.debug}, secret_key={REDACTED!r}, allowed_hosts={self.allowed_hosts!r}, "
            f"database={database!r}, redis_url={redact_url(self.redis_url) if self.redis_url else None!r}, email={email!r}, "
            f"base_url={self.base_url!r}, rate_limit_enabled={self.rate_limit_enabled}, rate_limit_multiplier={self.rate_limit_multiplier})"
        )

    __str__ = __repr__


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """A whole number from `env`, or ConfigError naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive, finite number of seconds from `env`, or ConfigError naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if not (0 < value < float("inf")):
        raise ConfigError(name, f"must be a positive number of seconds, got {raw!r}")
    return value


def _list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    raw = env.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _mode(env: Mapping[str, str]) -> str:
    mode = env.get("GPUBROKER_MODE", SANDBOX).strip().lower()
    if mode not in MODES:
        raise ConfigError("GPUBROKER_MODE", f"unknown mode {env['GPUBROKER_MODE']!r}; use sandbox or live")
    return mode


def _secret_key(env: Mapping[str, str], mode: str, var_dir: Path) -> str:
    key = env.get("SECRET_KEY", "").strip()
    if key:
        if mode == LIVE and (len(key) < 50 or len(set(key)) < 5):
            raise ConfigError("SECRET_KEY", "too weak for live mode; use at least 50 random characters")
        return key
    if mode == LIVE:
        raise ConfigError("SECRET_KEY", "required in live mode")
    # Sandbox: one key per checkout, generated once so sessions survive restarts.
    key_file = var_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def parse_database_url(
    url: str, variable: str = "DATABASE_URL", pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = DEFAULT_POOL_TIMEOUT
) -> dict[str, Any]:
    """Django DATABASES entry for a URL, or ConfigError naming `variable`."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DATABASE_SCHEMES:
            raise ConfigError(variable, f"unsupported scheme {parts.scheme!r}; use postgres:// or sqlite:///")
        if scheme != "sqlite" and (not parts.hostname or not parts.path.strip("/")):
            raise ConfigError(variable, "a PostgreSQL URL needs a host and a database name, e.g. postgres://user@host:5432/db")
        config = environ.Env.db_url_config(url)
    except ConfigError:
        raise
    except (ValueError, ImproperlyConfigured) as exc:
        raise ConfigError(variable, f"malformed URL ({exc})") from None
    if scheme != "sqlite":
        # Django's psycopg pool: a request borrows a connection and gives it back when it ends, so a
        # process holds at most `pool_size` whatever its thread count; `check` replaces connections
        # a server restart broke before a request sees them (CONN_HEALTH_CHECKS turns on the pool's
        # `check`). Persistent connections are the pool's, so CONN_MAX_AGE stays 0.
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = True
        config.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": pool_timeout}
    else:
        config["ENGINE"] = SQLITE_BOUNDED_ENGINE
        config.setdefault("OPTIONS", {}).update(_sqlite_options(pool_size, pool_timeout))
    return config


def _sqlite_options(pool_size: int, pool_timeout: float) -> dict[str, Any]:
    # WAL lets the page readers and the in-process market writer work side by side; the bounded
    # engine (web/db/sqlite3) caps open connections like the PostgreSQL pool does.
    return {
        "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20,
        "max_connections": pool_size, "connection_timeout": pool_timeout,
    }


def _web_concurrency(env: Mapping[str, str], redis_url: str | None, cores: int) -> int:
    """Server processes: one per core with Redis; exactly one without it, since the in-memory cache,
    channel layer and embedded worker cannot be shared between processes."""
    if not redis_url:
        if env_int(env, "WEB_CONCURRENCY", 1, minimum=1) != 1:
            raise ConfigError("WEB_CONCURRENCY", "more than one process needs REDIS_URL (without it the cache, live updates and worker live in one process)")
        return 1
    return env_int(env, "WEB_CONCURRENCY", max(1, cores), minimum=1)


def parse_redis_url(url: str, variable: str = "REDIS_URL") -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(variable, f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(variable, f"unsupported scheme {parts.scheme!r}; use redis://host:port/db")
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise ConfigError(variable, "missing host, e.g. redis://127.0.0.1:6379/0")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(variable, f"database index must be a number, got {db!r}")
    return url


def _email(env: Mapping[str, str], mode: str) -> dict[str, Any]:
    url = env.get("EMAIL_URL", "").strip()
    if not url:
        if mode == LIVE:
            raise ConfigError("EMAIL_URL", "required in live mode, e.g. smtp+tls://user:password@smtp.example.com:587")
        url = SANDBOX_EMAIL_URL
    try:
        if "://" not in url:
            raise ValueError("expected scheme://...")
        config = environ.Env.email_url_config(url)
    except (ValueError, ImproperlyConfigured) as exc:
        raise ConfigError("EMAIL_URL", f"malformed URL ({exc})") from None
    if mode == LIVE and config["EMAIL_BACKEND"].endswith("smtp.EmailBackend"):
        if not (config.get("EMAIL_USE_TLS") or config.get("EMAIL_USE_SSL")):
            raise ConfigError("EMAIL_URL", "live mode sends mail over TLS only: use smtp+tls:// or smtp+ssl://")
    return config


def _rate_limits(env: Mapping[str, str], mode: str) -> tuple[bool, int]:
    """(enabled, multiplier): live is strict, so neither may be relaxed there."""
    enabled = _flag(env, "RATE_LIMIT_ENABLED", default=True)
    if mode == LIVE and not enabled:
        raise ConfigError("RATE_LIMIT_ENABLED", "must be on in live mode (plan limits are enforced there)")
    if mode == LIVE:
        multiplier = env_int(env, "RATE_LIMIT_SANDBOX_MULTIPLIER", 1, minimum=1)
        if multiplier != 1:
            raise ConfigError("RATE_LIMIT_SANDBOX_MULTIPLIER", f"live mode enforces plan limits as sold; unset it or use 1, got {multiplier}")
        return enabled, 1
    return enabled, env_int(env, "RATE_LIMIT_SANDBOX_MULTIPLIER", DEFAULT_SANDBOX_RATE_MULTIPLIER, minimum=1)


def parse_forwarded_allow_ips(raw: str | None, mode: str) -> str:
    """The trusted proxies: comma-separated addresses and networks (CIDR), or `*` (sandbox only).

    Every entry must parse: uvicorn silently treats a typo as a literal that never matches, which
    would put every client behind the load balancer on the balancer's one rate limit.
    """
    if raw is None or not raw.strip():
        return DEFAULT_FORWARDED_ALLOW_IPS
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if items == ["*"]:
        if mode == LIVE:
            raise ConfigError("FORWARDED_ALLOW_IPS", "'*' would let any client choose its own address in live mode; list the load balancers' addresses or networks")
        return "*"
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise ConfigError("FORWARDED_ALLOW_IPS", f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8,127.0.0.1)") from None
    return ",".join(items)


def load_config(env: Mapping[str, str], base_dir: Path) -> Config:
    """Builds the Config from `env`, raising ConfigError on the first bad value."""
    mode = _mode(env)
    # The SQLite file and the sandbox's generated secret live here; tests point it at a temp dir.
    var_dir = Path(env.get("GPUBROKER_VAR_DIR", "").strip() or base_dir / "var")
    debug = _flag(env, "DEBUG", default=False)
    if mode == LIVE and debug:
        raise ConfigError("DEBUG", "must be off in live mode")

    pool_size = env_int(env, "DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE, minimum=1)
    pool_timeout = env_seconds(env, "DATABASE_POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT)
    database_url = env.get("DATABASE_URL", "").strip()
    if database_url:
        database = parse_database_url(database_url, pool_size=pool_size, pool_timeout=pool_timeout)
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        database = {
            "ENGINE": SQLITE_BOUNDED_ENGINE,
            "NAME": str(var_dir / "gpubroker.sqlite3"),
            "OPTIONS": _sqlite_options(pool_size, pool_timeout),
        }
    if mode == LIVE and database["ENGINE"] == SQLITE_BOUNDED_ENGINE:
        raise ConfigError("DATABASE_URL", "live mode needs PostgreSQL (postgres://...), not the embedded SQLite file")

    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url:
        parse_redis_url(redis_url)
    elif mode == LIVE:
        raise ConfigError("REDIS_URL", "live mode needs Redis for the cache, rate limits and live updates across instances")

    default_hosts = [] if mode == LIVE else ["127.0.0.1", "localhost", "[::1]"]
    allowed_hosts = _list(env, "ALLOWED_HOSTS", default_hosts)
    if mode == LIVE and not allowed_hosts:
        raise ConfigError("ALLOWED_HOSTS", "required in live mode: the comma-separated host names this site answers to")
    if mode == LIVE and "*" in allowed_hosts:
        raise ConfigError("ALLOWED_HOSTS", "'*' is not allowed in live mode")

    origins = _list(env, "CSRF_TRUSTED_ORIGINS", [])
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ConfigError("CSRF_TRUSTED_ORIGINS", f"{origin!r} must start with http:// or https://")

    base_url = env.get("BASE_URL", "http://127.0.0.1:8000").strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError("BASE_URL", f"{base_url!r} must start with http:// or https://")

    rate_limit_enabled, rate_limit_multiplier = _rate_limits(env, mode)
    return Config(
        mode=mode,
        debug=debug,
        secret_key=_secret_key(env, mode, var_dir),
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=origins,
        database=database,
        redis_url=redis_url,
        email=_email(env, mode),
        secure_ssl_redirect=_flag(env, "SECURE_SSL_REDIRECT", default=mode == LIVE),
        base_url=base_url,
        rate_limit_enabled=rate_limit_enabled,
        rate_limit_multiplier=rate_limit_multiplier,
        web_concurrency=_web_concurrency(env, redis_url, os.cpu_count() or 1),
        forwarded_allow_ips=parse_forwarded_allow_ips(env.get("FORWARDED_ALLOW_IPS"), mode),
    )
