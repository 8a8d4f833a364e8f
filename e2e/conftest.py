"""Playwright journeys against the real stack: the production ASGI server (web.serving) serving the app on PostgreSQL + Redis, in
Debian's Chromium. The server runs as a subprocess (the ASGI path, websockets included); this
process shares its database and Redis, so a test can change data and watch the page react.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis

from e2e.sandbox_services import sandbox_services

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
# Beside the unit tests' own, so several checkouts can run their suites at once.
E2E_DATABASE = f"{urlsplit(TEST_DATABASE_URL).path.strip('/') or 'test'}_e2e"
E2E_REDIS_DB = int(urlsplit(TEST_REDIS_URL).path.strip("/") or 0) + 1


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


E2E_DATABASE_URL = _with_path(TEST_DATABASE_URL, f"/{E2E_DATABASE}")
E2E_REDIS_URL = _with_path(TEST_REDIS_URL, f"/{E2E_REDIS_DB}")

# The journeys' own Django (to change data as an operator would) points where the server does.
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "true",  # Playwright's sync API runs a loop in this thread
        "GPUBROKER_MODE": "sandbox",
        "DATABASE_URL": E2E_DATABASE_URL,
        "REDIS_URL": E2E_REDIS_URL,
    }
)


def _fresh_database() -> None:
    admin_url = _with_path(TEST_DATABASE_URL, "/postgres").replace("postgres://", "postgresql://", 1)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{E2E_DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{E2E_DATABASE}"')
    except psycopg.Error as exc:
        pytest.exit(f"PostgreSQL is needed for the journeys and is not reachable at {TEST_DATABASE_URL}: {exc}", returncode=3)


def _fresh_redis() -> None:
    try:
        redis.Redis.from_url(E2E_REDIS_URL, socket_connect_timeout=3).flushdb()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is needed for the journeys and is not reachable at {E2E_REDIS_URL}: {exc}", returncode=3)


T = TypeVar("T")
# The environment the served app runs with beyond this process's own (filled by `server_url`).
SERVED_ENV: dict[str, str] = {}


def server_side(work: Callable[..., T], *args: Any) -> T:
    """Runs `work` outside Playwright's event loop, as the server's own code would run it."""
    from django.db import connections

    def run() -> T:
        try:
            return work(*args)
        finally:
            # Back to the pool (DATABASE_POOL_SIZE per process), as a request's end does: each call
            # runs in a new thread, so a connection kept here would be a pool slot lost for good.
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=os.environ.copy(), check=True, capture_output=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"journeys: uvicorn on PostgreSQL {E2E_DATABASE_URL} and Redis {E2E_REDIS_URL}, browser {CHROMIUM}"]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.exit("Debian's Chromium is missing at /usr/bin/chromium: run `make chromium` (apt-get install chromium)", returncode=3)
    _fresh_database()
    _fresh_redis()
    _manage("migrate", "--noinput")
    _manage("load_catalog")

    import django

    django.setup()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    services = sandbox_services(ROOT, ARTIFACTS, port)
    services_env = services.__enter__()  # mail sink + Stripe emulator, stopped after the server
    SERVED_ENV.update(services_env, BASE_URL=url)  # for other processes of the stack (the rentals loop)
    log = (ARTIFACTS / "server.log").open("w")
    from web.serving import uvicorn_command

    server = subprocess.Popen(
        uvicorn_command("web.asgi:application", "127.0.0.1", port),  # the server `manage.py serve` runs
        cwd=ROOT,
        env={**os.environ, **services_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                pytest.exit(f"the server exited with {server.returncode}; see {ARTIFACTS / 'server.log'}", returncode=3)
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.exit(f"the server did not become healthy at {url} within 30 s", returncode=3)
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        services.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": ["--disable-gpu"]}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# The accessibility gate's engine: npm's axe-core, fetched from the registry by npm itself at
# test time into a git-ignored folder (never a CDN), once per checkout and version.
AXE_VERSION = "4.14.1"
VENDOR = Path(__file__).resolve().parent / ".vendor"


@pytest.fixture(scope="session")
def axe_source() -> str:
    script = VENDOR / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if not script.exists():
        import tarfile

        VENDOR.mkdir(exist_ok=True)
        packed = subprocess.run(
            ["npm", "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", str(VENDOR), "--silent"],
            capture_output=True, text=True, timeout=180,
        )
        tarball = VENDOR / f"axe-core-{AXE_VERSION}.tgz"
        if packed.returncode != 0 or not tarball.exists():
            pytest.exit(f"could not fetch axe-core {AXE_VERSION} from the npm registry (npm pack): {packed.stderr.strip()}", returncode=3)
        with tarfile.open(tarball) as archive:
            member = archive.getmember("package/axe.min.js")
            script.parent.mkdir(exist_ok=True)
            script.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
        tarball.unlink()
    return script.read_text()
