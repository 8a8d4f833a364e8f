"""Database connections are bounded and pooled: a burst larger than the pool queues, then gets
503 with Retry-After, never 500, and a restarted PostgreSQL is used again once it is back."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.db.utils import ConnectionHandler
from django.test import Client

from tests.accounts_and_billing import make_user
from web.overload import database_unavailable
from web.serving import uvicorn_command

ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds:g} s")
        time.sleep(0.1)


@contextmanager
def served(database_url: str, **env: str) -> Iterator[str]:
    """The app as deployed (uvicorn, web.asgi) in a process of its own; yields its base URL."""
    port = _free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL, "GPUBROKER_MODE": "sandbox",
                   "RATE_LIMIT_SANDBOX_MULTIPLIER": "100000", **env}
    log = tempfile.NamedTemporaryFile(prefix="gpubroker-served-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(uvicorn_command("web.asgi:application", "127.0.0.1", port), cwd=ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, Path(log.name).read_text()[-2000:]
        try:
            return httpx.get(url + "/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        _wait_until(answers, 30, "the server did not answer")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        # What the server logged (a 500's traceback) is in the test's output when it fails.
        sys.stderr.write(Path(log.name).read_text()[-6000:])
        os.unlink(log.name)


def _server_connections(application_name: str) -> int:
    admin = settings.DATABASES["default"]
    with psycopg.connect(host=admin["HOST"], port=admin["PORT"] or 5432, user=admin["USER"], password=admin["PASSWORD"] or None,
                         dbname="postgres", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]).fetchone()
    return int(row[0]) if row else 0


def _signed_in_cookie() -> str:
    client = Client()
    client.force_login(make_user("burst@example.com"))
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_a_burst_larger_than_the_pool_gets_no_500_and_holds_at_most_the_pool(transactional_db: None) -> None:
    pool_size, application_name = 2, "gpubroker-pool-burst"
    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}?application_name={application_name}"
    cookie = _signed_in_cookie()
    peak, sampling = [0], threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], _server_connections(application_name))
            time.sleep(0.01)

    async def burst(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, cookies={settings.SESSION_COOKIE_NAME: cookie}, timeout=30) as client:
            answers = await asyncio.gather(*(client.get("/dashboard/") for _ in range(48)))
        return [a.status_code for a in answers]

    with served(url, DATABASE_POOL_SIZE=str(pool_size), DATABASE_POOL_TIMEOUT="10") as base:
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            statuses = asyncio.run(burst(base))
        finally:
            sampling.set()
            sampler.join()
        held_after = _server_connections(application_name)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) > 0
    assert 1 <= peak[0] <= pool_size
    assert held_after <= pool_size


def _occupy_every_pooled_connection() -> list[Any]:
    from psycopg_pool import PoolTimeout

    taken = []
    while True:
        try:
            taken.append(connection.pool.getconn(timeout=0.2))
        except PoolTimeout:
            return taken


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/dashboard/", "text/html"), ("/api/v2/providers/health", "application/json")],
)
def test_a_saturated_pool_answers_503_with_retry_after(transactional_db: None, path: str, content_type: str) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(make_user("saturated@example.com"))
    connection.close()  # back to the pool, so that it can be taken below like every other
    taken = _occupy_every_pooled_connection()
    answer: list[Any] = []
    try:
        # Another thread, as a request would be: it must ask the (exhausted) pool for a connection.
        request = threading.Thread(target=lambda: answer.append(client.get(path)))
        request.start()
        request.join(timeout=30)
    finally:
        for conn in taken:
            connection.pool.putconn(conn)
    response = answer[0]
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"].startswith(content_type)
    assert b"busy" in response.content


def _sqlite_connection(name: str, size: int) -> Any:
    handler = ConnectionHandler({"default": {
        "ENGINE": "web.db.sqlite3", "NAME": name,
        "OPTIONS": {"max_connections": size, "connection_timeout": 0.1},
    }})
    return handler.create_connection("default")


def test_sqlite_opens_at_most_its_configured_connections_and_frees_a_slot_on_close(tmp_path: Path, django_db_blocker: Any) -> None:
    django_db_blocker.unblock()  # a database of the test's own, not the test database
    name = str(tmp_path / "bounded.sqlite3")
    first, second, third = (_sqlite_connection(name, 2) for _ in range(3))
    first.ensure_connection()
    second.ensure_connection()
    with pytest.raises(OperationalError) as refused:
        third.ensure_connection()
    assert database_unavailable(refused.value)
    assert "all 2 database connections" in str(refused.value)
    first.close()
    third.ensure_connection()
    assert third.cursor().execute("SELECT 1").fetchone() == (1,)
    second.close()
    third.close()
    django_db_blocker.restore()


# ----- a private PostgreSQL, so that the test may stop and start it -----

def _as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Any]]:
    """(url, restart): a PostgreSQL cluster of our own (initdb + pg_ctl) on a free port."""
    binaries = sorted(glob("/usr/lib/postgresql/*/bin"))
    assert binaries, "PostgreSQL server binaries (initdb, pg_ctl) are needed under /usr/lib/postgresql/*/bin"
    bin_dir = Path(binaries[-1])
    root = Path(tempfile.mkdtemp(prefix="gpubroker-pg-"))
    data = root / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def pg_ctl(*args: str) -> None:
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), *args]),
                       check=True, capture_output=True)

    pg_ctl("-o", options, "-w", "start")
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")

    def restart(while_down: Any) -> None:
        pg_ctl("-m", "fast", "-w", "stop")
        try:
            while_down()
        finally:
            pg_ctl("-o", options, "-w", "start")

    try:
        yield f"postgres://postgres@127.0.0.1:{port}/app", restart
    finally:
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_after_a_postgresql_restart_the_pool_recovers_without_a_500(private_postgres: tuple[str, Any]) -> None:
    url, restart = private_postgres
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": TEST_REDIS_URL}
    for command in (["migrate", "--noinput"], ["load_catalog"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    # GPUBROKER_FASTPATH=0 and a fresh cache key per request: every answer below needs the database.
    with served(url, DATABASE_POOL_SIZE="3", DATABASE_POOL_TIMEOUT="1", GPUBROKER_FASTPATH="0") as base:
        assert httpx.get(base + "/api/v2/analytics/price-history?gpu_type=H100%2080GB&since=2020-01-01T00:00:00Z", timeout=10).status_code == 200
        during: list[int] = []

        def while_down() -> None:
            for minute in range(3):
                during.append(httpx.get(base + f"/api/v2/analytics/price-history?gpu_type=A100&since=2020-01-01T00:0{minute}:00Z", timeout=10).status_code)

        restart(while_down)
        _wait_until(lambda: httpx.get(base + "/health", timeout=5).status_code == 200, 30, "the database did not come back")
        after = [httpx.get(base + f"/api/v2/analytics/price-history?gpu_type=L4&since=2021-01-01T00:{m:02d}:00Z", timeout=10).status_code
                 for m in range(12)]
    assert during == [503, 503, 503]
    assert after == [200] * 12
