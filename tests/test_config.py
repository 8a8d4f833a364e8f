"""Settings come from the environment; each bad value stops start-up naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from web.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
LIVE_OK = {
    "GPUBROKER_MODE": "live",
    "SECRET_KEY": "k" * 30 + "abcdefghijklmnopqrstuvwxyz0123",
    "DATABASE_URL": "postgres://app@db.internal:5432/gpubroker",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "ALLOWED_HOSTS": "gpubroker.example.com",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
}


def load(env: dict[str, str], tmp_path: Path):
    return load_config(env, tmp_path)


def error_for(env: dict[str, str], tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(env, tmp_path)
    return caught.value


def test_it_defaults_to_sandbox_on_sqlite_and_memory_layers(tmp_path: Path) -> None:
    config = load({}, tmp_path)
    assert config.mode == "sandbox"
    assert config.database["ENGINE"] == "web.db.sqlite3"  # SQLite with bounded connections
    assert config.database["NAME"] == str(tmp_path / "var" / "gpubroker.sqlite3")
    assert config.redis_url is None
    assert config.email["EMAIL_HOST"] == "127.0.0.1" and config.email["EMAIL_PORT"] == 1025


def test_it_generates_the_sandbox_secret_once_per_checkout(tmp_path: Path) -> None:
    first = load({}, tmp_path).secret_key
    second = load({}, tmp_path).secret_key
    assert first == second and len(first) >= 50
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_it_reads_postgres_and_redis_urls(tmp_path: Path) -> None:
    config = load({"DATABASE_URL": "postgres://u:p@db:5433/app", "REDIS_URL": "redis://r:6380/2"}, tmp_path)
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert (config.database["HOST"], config.database["PORT"], config.database["NAME"]) == ("db", 5433, "app")
    assert config.redis_url == "redis://r:6380/2"


def test_the_database_pool_is_sized_by_configuration(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://u@db:5432/app", "DATABASE_POOL_SIZE": "5", "DATABASE_POOL_TIMEOUT": "0.5"}
    database = load(env, tmp_path).database
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 5, "timeout": 0.5}
    assert database["CONN_MAX_AGE"] == 0 and database["CONN_HEALTH_CHECKS"] is True
    sqlite = load({"DATABASE_POOL_SIZE": "3"}, tmp_path).database["OPTIONS"]
    assert (sqlite["max_connections"], sqlite["connection_timeout"]) == (3, 2.0)


def test_one_server_process_per_core_with_redis_and_exactly_one_without(tmp_path: Path) -> None:
    import os

    assert load({}, tmp_path).web_concurrency == 1
    assert load({"WEB_CONCURRENCY": "1"}, tmp_path).web_concurrency == 1
    assert load({"REDIS_URL": "redis://r:6379/0"}, tmp_path).web_concurrency == (os.cpu_count() or 1)
    assert load({"REDIS_URL": "redis://r:6379/0", "WEB_CONCURRENCY": "3"}, tmp_path).web_concurrency == 3


def test_it_accepts_a_complete_live_configuration(tmp_path: Path) -> None:
    config = load(LIVE_OK, tmp_path)
    assert config.is_live and not config.debug and config.secure_ssl_redirect
    assert config.email["EMAIL_USE_TLS"] is True
    assert (config.rate_limit_enabled, config.rate_limit_multiplier) == (True, 1)


def test_sandbox_relaxes_rate_limits_by_a_configurable_multiplier(tmp_path: Path) -> None:
    assert load({}, tmp_path).rate_limit_multiplier == 10
    assert load({"RATE_LIMIT_SANDBOX_MULTIPLIER": "3"}, tmp_path).rate_limit_multiplier == 3
    assert load({"RATE_LIMIT_ENABLED": "off"}, tmp_path).rate_limit_enabled is False


@pytest.mark.parametrize(
    ("env", "variable", "reason"),
    [
        ({"GPUBROKER_MODE": "staging"}, "GPUBROKER_MODE", "unknown mode 'staging'"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", "unsupported scheme 'mysql'"),
        ({"DATABASE_URL": "postgres://[::1"}, "DATABASE_URL", "malformed URL"),
        ({"DATABASE_URL": "postgres://host-only"}, "DATABASE_URL", "needs a host and a database name"),
        ({"DATABASE_URL": "postgres://h:notaport/db"}, "DATABASE_URL", "malformed URL"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL", "unsupported scheme 'http'"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL", "malformed URL"),
        ({"REDIS_URL": "redis://cache:6379/x"}, "REDIS_URL", "database index must be a number"),
        ({"EMAIL_URL": "carrier-pigeon://coop"}, "EMAIL_URL", "malformed URL"),
        ({"DEBUG": "maybe"}, "DEBUG", "expected true or false"),
        ({"CSRF_TRUSTED_ORIGINS": "example.com"}, "CSRF_TRUSTED_ORIGINS", "must start with http"),
        ({"RATE_LIMIT_SANDBOX_MULTIPLIER": "0"}, "RATE_LIMIT_SANDBOX_MULTIPLIER", "must be at least 1"),
        ({"RATE_LIMIT_SANDBOX_MULTIPLIER": "lots"}, "RATE_LIMIT_SANDBOX_MULTIPLIER", "expected a whole number"),
        ({"RATE_LIMIT_ENABLED": "sometimes"}, "RATE_LIMIT_ENABLED", "expected true or false"),
        ({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE", "must be at least 1"),
        ({"DATABASE_POOL_SIZE": "many"}, "DATABASE_POOL_SIZE", "expected a whole number"),
        ({"DATABASE_POOL_TIMEOUT": "-1"}, "DATABASE_POOL_TIMEOUT", "must be a positive number of seconds"),
        ({"WEB_CONCURRENCY": "0", "REDIS_URL": "redis://r:6379/0"}, "WEB_CONCURRENCY", "must be at least 1"),
        ({"WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY", "more than one process needs REDIS_URL"),
    ],
)
def test_it_rejects_a_bad_value_naming_the_variable(tmp_path: Path, env: dict[str, str], variable: str, reason: str) -> None:
    error = error_for(env, tmp_path)
    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")
    assert reason in str(error)


@pytest.mark.parametrize(
    ("change", "variable", "reason"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY", "required in live mode"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY", "too weak"),
        ({"DEBUG": "true"}, "DEBUG", "must be off in live mode"),
        ({"DATABASE_URL": ""}, "DATABASE_URL", "needs PostgreSQL"),
        ({"REDIS_URL": ""}, "REDIS_URL", "live mode needs Redis"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS", "required in live mode"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS", "not allowed in live mode"),
        ({"EMAIL_URL": "smtp://mail.example.com:25"}, "EMAIL_URL", "over TLS only"),
        ({"EMAIL_URL": ""}, "EMAIL_URL", "required in live mode"),
        ({"RATE_LIMIT_SANDBOX_MULTIPLIER": "10"}, "RATE_LIMIT_SANDBOX_MULTIPLIER", "enforces plan limits as sold"),
        ({"RATE_LIMIT_ENABLED": "false"}, "RATE_LIMIT_ENABLED", "must be on in live mode"),
    ],
)
def test_live_mode_refuses_an_unsafe_configuration(tmp_path: Path, change: dict[str, str], variable: str, reason: str) -> None:
    env = {key: value for key, value in {**LIVE_OK, **change}.items() if value != ""}
    error = error_for(env, tmp_path)
    assert error.variable == variable
    assert reason in str(error)


@pytest.mark.parametrize(("raw", "reason"), [("soon", "expected a number of seconds"), ("0", "must be a positive"), ("inf", "must be a positive")])
def test_a_bad_number_of_seconds_names_the_variable(raw: str, reason: str) -> None:
    from web.config import env_seconds

    with pytest.raises(ConfigError, match=f"^SANDBOX_REFRESH_SECONDS: {reason}"):
        env_seconds({"SANDBOX_REFRESH_SECONDS": raw}, "SANDBOX_REFRESH_SECONDS", 10.0)
    assert env_seconds({}, "SANDBOX_REFRESH_SECONDS", 10.0) == 10.0
    assert env_seconds({"SANDBOX_REFRESH_SECONDS": "2.5"}, "SANDBOX_REFRESH_SECONDS", 10.0) == 2.5


@pytest.mark.parametrize("entry", [["manage.py", "check"], ["-c", "import web.asgi"]])
def test_start_up_stops_with_one_line_naming_the_variable(entry: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *entry],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "GPUBROKER_MODE": "production", "DJANGO_SETTINGS_MODULE": "web.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["GPUBROKER configuration error: GPUBROKER_MODE: unknown mode 'production'; use sandbox or live"]


def test_trusted_proxies_default_to_loopback_and_take_addresses_and_networks(tmp_path: Path) -> None:
    assert load({}, tmp_path).forwarded_allow_ips == "127.0.0.1,::1"
    chosen = load({"FORWARDED_ALLOW_IPS": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32"}, tmp_path)
    assert chosen.forwarded_allow_ips == "10.0.0.0/8,192.0.2.7,2001:db8::/32"
    assert load({"FORWARDED_ALLOW_IPS": "*"}, tmp_path).forwarded_allow_ips == "*"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8,lb.internal"}, "'lb.internal' is not an IP address or network"),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.300"}, "'10.0.0.300' is not an IP address or network"),
        ({**LIVE_OK, "FORWARDED_ALLOW_IPS": "*"}, "'*' would let any client choose its own address in live mode"),
    ],
)
def test_a_bad_trusted_proxy_list_stops_start_up_naming_it(tmp_path: Path, env: dict[str, str], reason: str) -> None:
    error = error_for(env, tmp_path)
    assert error.variable == "FORWARDED_ALLOW_IPS" and reason in error.problem


def test_live_settings_believe_x_forwarded_proto_only_through_the_trusted_proxies() -> None:
    # Django's SECURE_PROXY_SSL_HEADER would believe the header from any peer; uvicorn sets the
    # scheme from it only for FORWARDED_ALLOW_IPS (web.serving).
    probe = "import web.settings as s; print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None), s.FORWARDED_ALLOW_IPS)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **LIVE_OK, "FORWARDED_ALLOW_IPS": "10.0.0.0/8"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "10.0.0.0/8"]
