"""The product started as `make run` starts it, in a child process, for tests that talk HTTP to it.

`served_app()` migrates and loads the sandbox catalog with `manage.py`, issues a real API key, then
runs the ASGI server `manage.py serve` runs (`web.serving.uvicorn_command`). Two set-ups:

- embedded: no DATABASE_URL and no REDIS_URL, so SQLite, in-memory cache and channel layers and the
  worker inside the server: what a newcomer's `make run` serves. GPUBROKER_VAR_DIR and
  SANDBOX_MAILBOX_DIR point at a temp dir, so the developer's own `var/` is never touched.
- postgres: a fresh database next to TEST_DATABASE_URL's (dropped afterwards) and TEST_REDIS_URL.

The server is stopped (and the database dropped) when the context ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 60.0  # seconds for the server to answer /health (a loaded 2-core machine)
# Streams end quickly so an HTTP client (the fuzzer) can read a whole one.
SSE_MAX_SECONDS = "0.3"
ISSUE_KEY = """
from django.contrib.auth import get_user_model
from billing.models import ApiKey
user, _ = get_user_model().objects.get_or_create(username="served-app", defaults={"email": "served-app@example.com"})
print(ApiKey.issue(user, "served app")[1])
"""


@dataclass(frozen=True)
class ServedApp:
    url: str
    api_key: str
    var_dir: Path
    log: Path
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        """`manage.py` against this app's database (what the server sees)."""
        return _manage(self.env, *args)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DATABASE_CONN_MAX_AGE")}
    env.update({
        "GPUBROKER_MODE": "sandbox", "GPUBROKER_VAR_DIR": str(var_dir), "SANDBOX_MAILBOX_DIR": str(var_dir / "mailbox"),
        "SSE_MAX_SECONDS": SSE_MAX_SECONDS, "DJANGO_SETTINGS_MODULE": "web.settings", "PYTHONUNBUFFERED": "1",
    })
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextmanager
def _postgres_database() -> Iterator[str]:
    import psycopg

    base = urlsplit(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    name = f"{base.path.strip('/')}_served_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(base._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(base._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def served_app(kind: str) -> Iterator[ServedApp]:
    """The app serving at a free local port; `kind` is "embedded" or "postgres"."""
    with tempfile.TemporaryDirectory(prefix=f"gpubroker-{kind}-") as tmp, _database(kind) as database_url:
        var_dir = Path(tmp) / "var"
        env = _base_env(var_dir)
        if database_url:
            env["DATABASE_URL"] = database_url
            env["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
        _manage(env, "migrate", "--noinput")
        _manage(env, "load_catalog")
        api_key = _manage(env, "shell", "-c", ISSUE_KEY).strip().splitlines()[-1]
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        sys.path.insert(0, str(ROOT))
        from web.serving import uvicorn_command

        with log.open("w") as out:
            server = subprocess.Popen(uvicorn_command("web.asgi:application", "127.0.0.1", port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_until_healthy(server, url, log)
            yield ServedApp(url, api_key, var_dir, log, env)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    if kind == "embedded":
        yield None
    elif kind == "postgres":
        with _postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown kind {kind!r}")


def _wait_until_healthy(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health within {START_DEADLINE:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)
