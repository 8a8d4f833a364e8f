"""HTTP serving under load: the load matrix of issue 8, as deployed, with same-run baselines.

As deployed: `manage.py serve` (uvicorn, WEB_CONCURRENCY processes, one per core) on PostgreSQL
(`<test db>_bench`, created fresh) and Redis (the journeys' database index + 1, flushed), with
`run_worker` refreshing the sandbox market the whole time, so caches are rebuilt under load as in
production. Every row is wrk (1 thread, 64 connections, BENCH_HTTP_SECONDS after a 1 s warm-up)
on 127.0.0.1, requests spread over 10,000 client addresses by X-Forwarded-For (bench/wrk_spread.lua),
so no address reaches its plan's rate. The API-key and session rows use a real Enterprise key and
a real session made through the models (bench/identities.py).

Baselines, measured in the same run under the same server and process count: a bare Django view
returning the offers' bytes (bench/bare_asgi.py) and a raw ASGI app returning them
(bench/raw_asgi.py). Each row prints its ratio to the bare view and the issue's targets, as
absolute figures and as ratios (the machine is shared, so absolute figures move between runs).
After the run it prints how many PostgreSQL connections the app holds.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
DURATION = int(os.environ.get("BENCH_HTTP_SECONDS", "8"))
CONNECTIONS = 64
PROCESSES = int(os.environ.get("WEB_CONCURRENCY", "") or os.cpu_count() or 1)
POOL_SIZE = 8  # DATABASE_POOL_SIZE per process, the default
SPREAD = str(ROOT / "bench" / "wrk_spread.lua")
OFFERS = "/api/v2/providers?limit=50"
RANKING = "/api/v2/providers/ranking?" + "&".join(
    f"{k}={quote(v, safe=':,')}" for k, v in {"gpu_type": "H100 80GB", "weights": "price:0.5,performance:0.3,availability:0.2", "top": "10"}.items()
)
QUERY_BODY = orjson.dumps({"gpu_type": ["A100 80GB", "H100 80GB"], "sort": "price_per_gpu", "limit": 20}).decode()


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


BENCH_DB = f"{urlsplit(TEST_DATABASE_URL).path.strip('/') or 'test'}_bench"
BENCH_DATABASE_URL = _with_path(TEST_DATABASE_URL, f"/{BENCH_DB}")
BENCH_REDIS_URL = _with_path(TEST_REDIS_URL, f"/{int(urlsplit(TEST_REDIS_URL).path.strip('/') or 0) + 1}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPUBROKER_", "DATABASE_", "WEB_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "web.settings", "GPUBROKER_MODE": "sandbox", "DEBUG": "false",
                "DATABASE_URL": BENCH_DATABASE_URL, "REDIS_URL": BENCH_REDIS_URL, "WEB_CONCURRENCY": str(PROCESSES),
                # No mail sink and a Stripe emulator of our own: `serve` starts nothing on ports others use.
                "EMAIL_URL": "consolemail://", "STRIPE_EMULATOR_URL": f"http://127.0.0.1:{_free_port()}", **extra})
    return env


def _prepare() -> dict[str, str]:
    admin = _with_path(TEST_DATABASE_URL, "/postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    for command in (["migrate", "--noinput"], ["load_catalog"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=_env(), check=True, capture_output=True)
    made = subprocess.run([sys.executable, "-m", "bench.identities"], cwd=ROOT, env=_env(), check=True, capture_output=True, text=True)
    return orjson.loads(made.stdout.strip().splitlines()[-1])


class Server:
    """A server in its own process group (so `serve` and its children stop together)."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, ready_path: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} did not answer within 60 s")
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, method: str = "GET", headers: dict[str, str] | None = None, body: str = "") -> dict[str, float]:
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body,
           "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items())}
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", SPREAD, url],
                         check=True, capture_output=True, text=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = float(re.search(r"^5xx: (\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    other = float(re.search(r"^other non-2xx: (\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": p50, "p99": p99, "5xx": errors, "other": other}


async def _sse_connects(base: str, seconds: float) -> dict[str, float]:
    """64 clients opening /api/v2/providers/stream again and again: time to the `subscribed` event."""
    times: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                headers = {"X-Forwarded-For": f"10.{n}.{len(times) % 250}.{len(times) % 200 + 1}"}
                async with http.stream("GET", "/api/v2/providers/stream?subscribe=gpu:H100%2080GB", headers=headers) as response:
                    if response.status_code >= 500:
                        errors[0] += 1
                        continue
                    async for chunk in response.aiter_bytes():
                        if b"event: subscribed" in chunk:
                            times.append((time.perf_counter() - started) * 1000)
                            break

    await asyncio.gather(*(client(n) for n in range(CONNECTIONS)))
    times.sort()
    return {"rps": len(times) / seconds, "p50": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1] if times else 0.0,
            "5xx": float(errors[0]), "other": 0.0}


@dataclass(frozen=True)
class Target:
    rps: float
    ratio: float
    p99_ms: float

    def label(self) -> str:
        return f">={self.rps:,.0f}/s >={self.ratio:g}x P99<={self.p99_ms:g}"


# The targets (one instance on this 2-core machine); rows without one must simply not fail.
TARGETS = {
    "anonymous offers": Target(8000, 5, 50),
    "offers, Enterprise API key": Target(5000, 3, 50),
    "offers, signed-in session": Target(5000, 3, 50),
    "ranking, typical query": Target(2000, 1.25, 100),
    "landing page": Target(1000, 0.5, 100),
    "browse, filtered": Target(500, 0.3, 200),
    "dashboard, signed in": Target(300, 0.2, 200),
}


def _app_connections() -> int:
    admin = _with_path(TEST_DATABASE_URL, "/postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [BENCH_DB]).fetchone()
    return int(row[0]) if row else 0


def _baseline(name: str, app: str, body_file: str) -> dict[str, float | str]:
    from web.serving import uvicorn_command

    port = _free_port()
    server = Server(uvicorn_command(app, "127.0.0.1", port, workers=PROCESSES), _env(BENCH_BODY_FILE=body_file), port, OFFERS)
    try:
        wrk(server.url + OFFERS, 1)
        return {"name": name, **wrk(server.url + OFFERS, DURATION)}
    finally:
        server.stop()


def main() -> None:
    print(f"\n== HTTP load matrix: as deployed (manage.py serve, {PROCESSES} processes, PostgreSQL + Redis, worker running); "
          f"wrk -t1 -c{CONNECTIONS} -d{DURATION}s on 127.0.0.1, 10,000 client addresses; noisy shared machine: compare ratios ==")
    who = _prepare()
    port = _free_port()
    product = Server([sys.executable, "manage.py", "serve", "--port", str(port)], _env(), port, "/health")
    peak = [0]
    try:
        offers_body = httpx.get(product.url + OFFERS, timeout=10).content
        cookie = {"Cookie": f"{who['cookie_name']}={who['session']}"}
        rows_spec: list[tuple[str, str, str, dict[str, str], str]] = [
            ("anonymous offers", "GET", OFFERS, {}, ""),
            ("offers, Enterprise API key", "GET", OFFERS, {"X-API-Key": who["api_key"]}, ""),
            ("offers, signed-in session", "GET", OFFERS, cookie, ""),
            ("ranking, typical query", "GET", RANKING, {}, ""),
            ("landing page", "GET", "/", {}, ""),
            ("browse, filtered", "GET", "/browse/?gpu_type=H100+80GB&sort=topsis", {}, ""),
            ("dashboard, signed in", "GET", "/dashboard/", cookie, ""),
            ("POST /api/v2/providers/query", "POST", "/api/v2/providers/query", {"Content-Type": "application/json"}, QUERY_BODY),
        ]
        rows: list[dict[str, float | str]] = []
        for name, method, path, headers, body in rows_spec:
            check = httpx.request(method, product.url + path, headers=headers, content=body or None, timeout=10)
            assert check.status_code == 200, f"{name}: {check.status_code} {check.text[:200]}"
            wrk(product.url + path, 1, method, headers, body)
            rows.append({"name": name, **wrk(product.url + path, DURATION, method, headers, body)})
            peak[0] = max(peak[0], _app_connections())
        rows.append({"name": "SSE connect to first event", **asyncio.run(_sse_connects(product.url, DURATION / 2))})
        held = _app_connections()
    finally:
        product.stop()

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        handle.write(offers_body)
    try:
        bare = _baseline("baseline: bare Django view, same bytes", "bench.bare_asgi:application", handle.name)
        raw = _baseline("baseline: raw ASGI app, same bytes", "bench.raw_asgi:application", handle.name)
    finally:
        os.unlink(handle.name)

    bare_rps = float(bare["rps"])
    print(f"{'row':<36}{'req/s':>9}{'P50 ms':>9}{'P99 ms':>9}{'5xx':>6}{'x bare':>8}  {'target':<30}{'ratio+P99':>10}{'absolute':>10}")
    for row in [raw, bare, *rows]:
        target = TARGETS.get(str(row["name"]))
        rps, p99, errors = float(row["rps"]), float(row["p99"]), int(row["5xx"])
        if target is None:
            verdict = ("-", "-") if str(row["name"]).startswith("baseline") else ("met" if errors == 0 else "MISSED", "-")
        else:
            ok = errors == 0 and p99 <= target.p99_ms
            verdict = ("met" if ok and rps / bare_rps >= target.ratio else "MISSED", "met" if ok and rps >= target.rps else "MISSED")
        print(f"{row['name']:<36}{rps:>9,.0f}{float(row['p50']):>9.1f}{p99:>9.1f}{errors:>6}{rps / bare_rps:>8.2f}  "
              f"{target.label() if target else '0 x 5xx':<30}{verdict[0]:>10}{verdict[1]:>10}"
              + (f"  ({int(row['other'])} 3xx/4xx)" if row["other"] else ""))
    bound = PROCESSES * POOL_SIZE + POOL_SIZE  # web processes' pools + the worker's
    print(f"PostgreSQL connections held by the app after the run: {held} (peak seen between rows: {peak[0]}; "
          f"bound: {PROCESSES} web processes x {POOL_SIZE} + worker {POOL_SIZE} = {bound})")


if __name__ == "__main__":
    main()
