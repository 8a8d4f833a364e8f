"""Pytest plugin (loaded with `-p tests.environment` before Django): points the tests at real
PostgreSQL and Redis and stops the run, naming the service, when one is not there.

TEST_DATABASE_URL and TEST_REDIS_URL choose them (defaults: the local servers). Nothing is
skipped: a missing service fails the whole run with a message that says which and how to start it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")

# Distinctive fake secrets, which tests.secret_scan looks for in every response and log record.
FAKE_SECRET_KEY = "fake-secret-key-for-tests-3f9c1a7e5b2d4068a1c9e7f3b5d20486"
FAKE_DATABASE_PASSWORD = "fake-db-password-for-tests-8e41c2"


def _with_fake_password(url: str) -> str:
    """`url` with FAKE_DATABASE_PASSWORD when it has none and the server does not check passwords
    (trust authentication, as on the test machines); otherwise `url` unchanged."""
    parts = urlsplit(url)
    if parts.password is not None or not parts.username:
        return url
    netloc = f"{parts.username}:{FAKE_DATABASE_PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    candidate = urlunsplit(parts._replace(netloc=netloc))
    try:
        import psycopg

        probe = urlunsplit(urlsplit(candidate)._replace(path="/postgres", scheme="postgresql"))
        with psycopg.connect(probe, connect_timeout=3):
            return candidate
    except Exception:  # password checked, or server down (reported by pytest_configure below)
        return url


# Settings are read from the environment when Django starts, which happens after this module.
os.environ["DATABASE_URL"] = _with_fake_password(TEST_DATABASE_URL)
os.environ.setdefault("SECRET_KEY", FAKE_SECRET_KEY)
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ["GPUBROKER_MODE"] = "sandbox"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")

START_HINTS = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no",
}


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}{parts.path}"


def _check_postgres() -> str | None:
    import psycopg

    # The server's maintenance database: the named one need not exist, Django creates test_<name>.
    server_url = urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path="/postgres", scheme="postgresql"))
    try:
        with psycopg.connect(server_url, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return None if version else "no answer"
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def _check_redis() -> str | None:
    import redis

    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3).ping()
        return None
    except redis.RedisError as exc:
        return str(exc)


def pytest_configure(config: pytest.Config) -> None:
    problems = []
    for name, url, check in (("PostgreSQL", TEST_DATABASE_URL, _check_postgres), ("Redis", TEST_REDIS_URL, _check_redis)):
        error = check()
        if error:
            problems.append(f"{name} is not reachable at {_where(url)} ({error}); start it with: {START_HINTS[name]}")
    if problems:
        raise pytest.UsageError("the tests need real services:\n  " + "\n  ".join(problems))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"database: PostgreSQL at {_where(TEST_DATABASE_URL)} (tests use a test_ copy)",
        f"cache and channel layer: Redis at {_where(TEST_REDIS_URL)}",
    ]
