"""HTTP serving: cached GET /api/v2/providers (50 offers, anonymous, every production middleware)
under wrk, beside a bare Django view returning the same bytes under daphne, in the same run.

Four servers, one at a time, each a fresh process on 127.0.0.1 (wrk: 1 thread, 64 connections,
10 s after a 2 s warm-up, on the same 2-core machine):

- bare Django view under daphne: the baseline (no middleware, prebuilt bytes);
- the product through Django only (GPUBROKER_FASTPATH=0) under daphne: every middleware, ninja,
  the L2 hit;
- the same stack behind the ASGI fast path (web/fastpath.py) under daphne;
- the product as deployed (`manage.py serve`): the fast path under uvicorn (httptools, uvloop).

It also times a websocket handshake + confirmation through each product server, to show the
fast path leaves the websocket path as it was. Uses `<test db>_bench` in PostgreSQL (created
fresh) and the journeys' Redis database (flushed, as the journeys do).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
DURATION = int(os.environ.get("BENCH_HTTP_SECONDS", "10"))
CONNECTIONS = 64
PATH = "/api/v2/providers?limit=50"
TARGET_RPS, TARGET_RATIO, TARGET_P99_MS = 5000.0, 4.0, 50.0


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


BENCH_DB = f"{urlsplit(TEST_DATABASE_URL).path.strip('/') or 'test'}_bench"
BENCH_DATABASE_URL = _with_path(TEST_DATABASE_URL, f"/{BENCH_DB}")
BENCH_REDIS_URL = _with_path(TEST_REDIS_URL, f"/{int(urlsplit(TEST_REDIS_URL).path.strip('/') or 0) + 1}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPUBROKER_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "web.settings", "GPUBROKER_MODE": "sandbox", "DEBUG": "false",
                "DATABASE_URL": BENCH_DATABASE_URL, "REDIS_URL": BENCH_REDIS_URL,
                # The limiter still counts every request (its cost is in the figures), but one load
                # generator's address must not be refused past Free's rate.
                "RATE_LIMIT_SANDBOX_MULTIPLIER": "1000000", **extra})
    return env


def _prepare_data() -> None:
    admin = _with_path(TEST_DATABASE_URL, "/postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    for command in (["migrate", "--noinput"], ["load_catalog"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=_env(), check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, app: str, port: int) -> list[str]:
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    from web.serving import uvicorn_command

    return uvicorn_command(app, "127.0.0.1", port)


class Server:
    def __init__(self, app: str, env: dict[str, str], ready_path: str, server: str = "daphne") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(server_command(server, app, self.port),
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{app} exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not answer within 30 s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": float(errors.group(1)) if errors else 0.0}


def websocket_confirmation_ms(port: int, rounds: int = 50) -> float:
    """Median time to open /ws/providers/ and receive the server's confirmation frame."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET /ws/providers/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n").encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"websocket refused: {head[:80]!r}")
            while len(rest) < 2:
                rest += sock.recv(4096)
            length = rest[1] & 0x7F
            header = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            while len(rest) < header:
                rest += sock.recv(4096)
            if length >= 126:
                length = int.from_bytes(rest[2:header], "big")
            while len(rest) < header + length:
                rest += sock.recv(4096)
            if b'id="live-status"' not in rest[header : header + length]:
                raise RuntimeError("no confirmation frame")
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(name: str, app: str, env: dict[str, str], ready: str, websocket: bool, server_name: str = "daphne") -> dict[str, float | str]:
    server = Server(app, env, ready, server_name)
    try:
        for _ in range(3):  # the first answer goes through Django and primes the caches
            assert httpx.get(server.url + PATH, timeout=10).status_code == 200
        wrk(server.url + PATH, 2)
        result: dict[str, float | str] = {"name": name, **wrk(server.url + PATH, DURATION)}
        if websocket:
            result["ws_ms"] = websocket_confirmation_ms(server.port)
        return result
    finally:
        server.stop()


def main() -> None:
    print("\n== HTTP: cached GET /api/v2/providers?limit=50, anonymous, every middleware (wrk -t1 -c64, 127.0.0.1, one server process) ==")
    _prepare_data()
    product = Server("web.asgi:application", _env(), "/health")
    try:
        body = httpx.get(product.url + PATH, timeout=10).content
    finally:
        product.stop()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        handle.write(body)
    try:
        rows = [
            measure("bare Django view, same bytes (daphne)", "bench.bare_asgi:application", _env(BENCH_BODY_FILE=handle.name), PATH, False),
            measure("API, Django only (daphne)", "web.asgi:application", _env(GPUBROKER_FASTPATH="0"), "/health", True),
            measure("API, fast path (daphne)", "web.asgi:application", _env(), "/health", True),
            measure("API, fast path (uvicorn): as deployed", "web.asgi:application", _env(), "/health", True, "uvicorn"),
        ]
    finally:
        os.unlink(handle.name)
    bare = float(rows[0]["rps"])
    offers = len(orjson.loads(body)["items"])
    print(f"body: {len(body):,} bytes, {offers} offers")
    print(f"{'server':<44}{'req/s':>10}{'P50 ms':>9}{'P99 ms':>9}{'x bare':>8}{'ws ms':>8}")
    for row in rows:
        ws = f"{row['ws_ms']:.1f}" if "ws_ms" in row else "-"
        print(f"{row['name']:<44}{row['rps']:>10,.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{float(row['rps']) / bare:>8.2f}{ws:>8}"
              + (f"  ({int(row['non2xx'])} non-2xx!)" if row["non2xx"] else ""))
    deployed = rows[-1]
    checks = [
        (f">= {TARGET_RPS:,.0f} req/s", float(deployed["rps"]) >= TARGET_RPS),
        (f">= {TARGET_RATIO:g}x bare daphne", float(deployed["rps"]) / bare >= TARGET_RATIO),
        (f"P99 < {TARGET_P99_MS:g} ms", float(deployed["p99"]) < TARGET_P99_MS),
    ]
    print("targets (as deployed): " + ", ".join(f"{label}: {'met' if ok else 'MISSED'}" for label, ok in checks))


if __name__ == "__main__":
    main()
