"""Websocket fan-out: 1,000 and 10,000 subscribers on one instance as deployed, beside a raw ASGI
broadcast in the same run.

The product: `web.asgi:application` under uvicorn exactly as `web/serving.py` starts it, on
PostgreSQL (`<test db>_bench_ws`, created fresh) and Redis (the journeys' Redis database + 2,
flushed). Every client opens `/ws/providers/?format=json` (subscribed to `price_updates`) with its
own `X-Forwarded-For` address (10.x.y.z, trusted from loopback), so the per-address cap is not what
is measured. Events are published as the worker publishes them: `group_send` of `offers.changed`
on the same channels_redis layer, one event a second, each stamped with its publication time.

The baseline: `bench/bare_ws.py` (one Redis pub/sub reader, a loop of `send` to every socket, no
Django or Channels) under the same uvicorn, the same clients and the same event rate.

Delay is from just before publication to the arrival of the frame at each client (both clocks are
this machine's CLOCK_MONOTONIC). "dropped" counts frames that never arrived, plus clients the server
cut off (close 4008) or refused, and the server's own `gpubroker_ws_dropped_total`. The clients are
a minimal asyncio websocket reader in this process (uvloop), so their own CPU shares the two cores
with the server: the baseline row shows what that costs. The machine is shared; figures move.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import psycopg
import redis

from web.serving import uvicorn_command

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
SIZES = tuple(int(n) for n in os.environ.get("BENCH_WS_SUBSCRIBERS", "1000,10000").split(","))
EVENTS = int(os.environ.get("BENCH_WS_EVENTS", "5"))
EVENT_INTERVAL = 1.0
CONNECTS_IN_FLIGHT = 500
TARGET_P99_MS = 100.0


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


BENCH_DB = f"{urlsplit(TEST_DATABASE_URL).path.strip('/') or 'test'}_bench_ws"
BENCH_DATABASE_URL = _with_path(TEST_DATABASE_URL, f"/{BENCH_DB}")
BENCH_REDIS_URL = _with_path(TEST_REDIS_URL, f"/{int(urlsplit(TEST_REDIS_URL).path.strip('/') or 0) + 2}")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPUBROKER_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "web.settings", "GPUBROKER_MODE": "sandbox", "DEBUG": "false",
                "DATABASE_URL": BENCH_DATABASE_URL, "REDIS_URL": BENCH_REDIS_URL, "BENCH_REDIS_URL": BENCH_REDIS_URL})
    return env


def _prepare() -> None:
    admin = _with_path(TEST_DATABASE_URL, "/postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=_env(), check=True, capture_output=True)


def _raise_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, app: str) -> None:
        self.port = _free_port()
        # Children inherit the raised RLIMIT_NOFILE.
        self.process = subprocess.Popen(uvicorn_command(app, "127.0.0.1", self.port), cwd=ROOT, env=_env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{app} did not start: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{app} never listened on {self.port}") from None
                time.sleep(0.1)

    def dropped_by_server(self) -> float | None:
        try:
            body = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        except httpx.HTTPError:
            return None
        found = re.search(r'^gpubroker_ws_dropped_total\{transport="websocket"\} ([0-9.e+]+)$', body, re.M)
        return float(found.group(1)) if found else 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Client(asyncio.Protocol):
    """A websocket client that only reads: handshake, unmasked server frames, pongs to pings."""

    request: bytes
    opened: asyncio.Future[None]
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    close_code: int | None = None
    transport: asyncio.Transport | None = None
    buffer: bytearray = field(default_factory=bytearray)
    upgraded: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(RuntimeError(status.decode(errors="replace")))
                return
            self.upgraded = True
        while len(self.buffer) >= 2:
            length, offset = self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                return
            opcode, payload = self.buffer[0] & 0x0F, bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            if opcode == 1:
                if not self.opened.done():
                    self.opened.set_result(None)  # the confirmation
                else:
                    self.frames.append((now, payload))
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            elif opcode == 9 and self.transport is not None:  # ping: answer a masked pong
                mask = os.urandom(4)
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the confirmation ({exc})"))


def _request(path: str, port: int, n: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    address = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"X-Forwarded-For: {address}\r\n\r\n").encode()


async def _connect_all(port: int, path: str, count: int) -> tuple[list[Client], int]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    clients: list[Client] = []
    refused = 0

    async def one(n: int) -> None:
        nonlocal refused
        async with gate:
            client = Client(_request(path, port, n + 1), loop.create_future())
            try:
                await loop.create_connection(lambda: client, "127.0.0.1", port)
                await asyncio.wait_for(client.opened, 30)
                clients.append(client)
            except (OSError, RuntimeError, ConnectionError, TimeoutError):
                refused += 1
                if client.transport is not None:
                    client.transport.close()

    await asyncio.gather(*(one(n) for n in range(count)))
    return clients, refused


@dataclass
class Row:
    name: str
    subscribers: int
    connect_s: float
    delays_ms: list[float]
    dropped: int
    server_dropped: float | None

    def line(self) -> str:
        d = sorted(self.delays_ms) or [float("nan")]
        p = lambda q: d[min(len(d) - 1, int(q * len(d)))]  # noqa: E731
        server = "-" if self.server_dropped is None else f"{self.server_dropped:.0f}"
        return (f"| {self.name} | {self.subscribers:,} | {self.connect_s:.1f} | {statistics.median(d):.1f} | {p(0.99):.1f} | {d[-1]:.1f} "
                f"| {self.dropped:,} | {server} |")


async def _measure(name: str, server: Server, path: str, subscribers: int, publish: object) -> Row:
    started = time.monotonic()
    clients, refused = await _connect_all(server.port, path, subscribers)
    connect_s = time.monotonic() - started
    sent_at: dict[int, float] = {}
    for seq in range(EVENTS):
        sent_at[seq] = time.monotonic()
        await publish(seq, sent_at[seq])  # type: ignore[operator]
        await asyncio.sleep(EVENT_INTERVAL)
    # Stragglers: wait while frames still arrive (at most 5 s without progress), so that "dropped"
    # means never delivered, not late.
    expected, last, quiet_since = len(clients) * EVENTS, -1, time.monotonic()
    while (arrived := sum(len(c.frames) for c in clients)) < expected and time.monotonic() - quiet_since < 5:
        if arrived != last:
            last, quiet_since = arrived, time.monotonic()
        await asyncio.sleep(0.2)
    delays, received, cut_off = [], 0, 0
    for client in clients:
        for arrived, payload in client.frames:
            seq = orjson.loads(payload)["payload"]["bench_seq"]
            delays.append((arrived - sent_at[seq]) * 1000)
            received += 1
        cut_off += client.close_code is not None
    server_dropped = server.dropped_by_server() if "bare" not in name else None
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.5)
    dropped = subscribers * EVENTS - received
    print(f"  {name}, {subscribers:,}: {len(clients):,} connected ({refused} refused) in {connect_s:.1f} s, {cut_off} closed by the server", flush=True)
    return Row(name, subscribers, connect_s, delays, dropped, server_dropped)


async def _run() -> list[Row]:
    import uvloop  # noqa: F401  (the server runs on it; the clients too, below)
    from channels_redis.core import RedisChannelLayer

    # The layer the worker publishes through (web/settings.py CHANNEL_LAYERS with Redis).
    layer = RedisChannelLayer(hosts=[BENCH_REDIS_URL], prefix="gpubroker")
    pubsub = redis.asyncio.Redis.from_url(BENCH_REDIS_URL)

    async def product_publish(seq: int, at: float) -> None:
        await layer.group_send("price_updates", {"type": "offers.changed", "payload": {"bench_seq": seq, "published_at": at, "changes": []}})

    async def bare_publish(seq: int, at: float) -> None:
        deadline = time.monotonic() + 10
        while seq == 0 and (await pubsub.pubsub_numsub("bench.ws"))[0][1] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the baseline subscribes on its first connection
        await pubsub.publish("bench.ws", orjson.dumps({"type": "offers.changed", "payload": {"bench_seq": seq, "published_at": at, "changes": []}}))

    rows = []
    for subscribers in SIZES:
        for name, app, path, publish in (
            ("raw ASGI broadcast (baseline)", "bench.bare_ws:application", "/", bare_publish),
            ("/ws/providers/?format=json (as deployed)", "web.asgi:application", "/ws/providers/?format=json", product_publish),
        ):
            server = Server(app)
            try:
                rows.append(await _measure(name, server, path, subscribers, publish))
            finally:
                server.stop()
    await pubsub.aclose()
    return rows


def main() -> None:
    import uvloop

    limit = _raise_file_limit(2 * max(SIZES) + 1000)
    if limit < max(SIZES) + 500:
        print(f"bench_ws: RLIMIT_NOFILE is {limit}; needs {max(SIZES) + 500} for {max(SIZES):,} subscribers")
    print(f"\nWebsocket fan-out (uvicorn as web/serving.py; {EVENTS} events, one a second; clients in this process)", flush=True)
    _prepare()
    rows = uvloop.run(_run())
    print("\n| server | subscribers | connect s | P50 ms | P99 ms | max ms | dropped | server cut off |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row.line())
    product = [r for r in rows if "deployed" in r.name]
    for row in product:
        d = sorted(row.delays_ms)
        p99 = d[min(len(d) - 1, int(0.99 * len(d)))] if d else float("inf")
        verdict = "met" if row.dropped == 0 and p99 < TARGET_P99_MS else "NOT met"
        print(f"target at {row.subscribers:,} subscribers (0 dropped, P99 < {TARGET_P99_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
