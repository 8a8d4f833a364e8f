"""Live updates to this process's sockets: one channel-layer reader per process, fanned out in memory.

Publishers (the worker, `providers.live`) keep calling `group_send` on the channel layer. Each
server process joins a group once, with one channel of its own, the first time one of its
sockets (websocket or SSE) subscribes, and leaves it when the last one goes; on the Redis layer
every such channel is read through the one connection channels_redis keeps per process. A message
that arrives is wrapped once (`Broadcast`, which also encodes each dialect's frame once) and
offered to every local subscriber's bounded queue (`Feed`).

A slow client never delays the others: offering never waits. A subscriber whose queue is full
(its socket has stopped taking writes) is cut off at once: it leaves every group, the drop is
counted in `gpubroker_ws_dropped_total`, and its connection is closed as soon as it can be.

Admission is bounded per process: at most `WS_MAX_CONNECTIONS_PER_ADDRESS` sockets from one
client address (IPv6 by /64) and `WS_MAX_CONNECTIONS` in all; both limits and every refusal are
in `/metrics`. Without Redis the same hub reads the in-memory layer, inside the one process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import weakref
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("gpubroker.fanout")

# Group membership in channels_redis expires after a day unless renewed.
MEMBERSHIP_RENEW_SECONDS = 3600.0

CONNECTIONS = Gauge("gpubroker_ws_connections", "Open live-update connections in this process", ["transport"])
DROPPED = MetricCounter(
    "gpubroker_ws_dropped", "Live-update subscribers cut off because their queue was full (a client not reading)", ["transport"]
)
REFUSED = MetricCounter("gpubroker_ws_refused", "Live-update connections refused by a connection cap", ["reason"])
PER_ADDRESS_LIMIT = Gauge("gpubroker_ws_connections_per_address_limit", "Most live-update connections one address may hold in this process")
PROCESS_LIMIT = Gauge("gpubroker_ws_connections_limit", "Most live-update connections this process holds")
QUEUE_LIMIT = Gauge("gpubroker_ws_queue_limit", "Messages a subscriber may have waiting before it is cut off")


class Refused(Exception):
    """A connection over a cap; `reason` is the metric label, `message` tells the client."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def address_key(host: str | None) -> str:
    """The address a connection counts against: itself for IPv4, its /64 for IPv6."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Broadcast:
    """One group message as every local subscriber receives it; each dialect's frame is built once."""

    __slots__ = ("message", "_frames")

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self._frames: dict[str, Any] = {}

    def frame(self, dialect: str, render: Callable[[dict[str, Any]], Any]) -> Any:
        """`render(message)` for this dialect, computed by the first subscriber that asks."""
        try:
            return self._frames[dialect]
        except KeyError:
            frame = self._frames[dialect] = render(self.message)
            return frame


class _Resume:
    """Awaits the rest of a coroutine whose first step already ran (Python 3.12's eager tasks, by hand)."""

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self) -> Generator[Any, None, None]:
        yielded = self.yielded
        while True:
            try:
                yield yielded
            except BaseException as exc:  # cancellation reaches the coroutine where it waits
                try:
                    yielded = self.coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                yielded = self.coro.send(None)
            except StopIteration:
                return


class Feed:
    """One subscriber's bounded queue of broadcasts.

    Pull (SSE): `await feed.next()`. Push (websockets): `feed.push_to(deliver, on_cut_off)`; a
    broadcast offered while no write is pending is written at once, inside the fan-out loop, and
    only a write that has to wait (the socket's buffer is full) gets a task of its own, behind
    which later broadcasts queue up to the limit.
    """

    def __init__(self, hub: FanoutHub, address: str, transport: str, limit: int) -> None:
        self.hub, self.address, self.transport, self.limit = hub, address, transport, limit
        self.groups: set[str] = set()
        self.cut_off = False
        self.closed = False
        self._queue: deque[Broadcast] = deque()
        self._ready = asyncio.Event()
        self._deliver: Callable[[Broadcast], Coroutine[Any, Any, None]] | None = None
        self._on_cut_off: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._writing: asyncio.Task[None] | None = None

    def push_to(self, deliver: Callable[[Broadcast], Coroutine[Any, Any, None]], on_cut_off: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._deliver, self._on_cut_off = deliver, on_cut_off
        if self._queue and self._writing is None:  # what arrived before the socket was ready
            self._writing = asyncio.get_running_loop().create_task(self._write_rest(None, None))

    def offer(self, broadcast: Broadcast) -> None:
        """Queues (or writes) `broadcast` without waiting; a full queue cuts this subscriber off."""
        if self.cut_off or self.closed:
            return
        if len(self._queue) >= self.limit:
            self.hub._cut_off(self)
            return
        if self._deliver is not None and self._writing is None:
            self._write_now(broadcast)
            return
        self._queue.append(broadcast)
        self._ready.set()

    def _write_now(self, broadcast: Broadcast) -> None:
        assert self._deliver is not None
        coro = self._deliver(broadcast)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return  # written without waiting: the common case
        except Exception:
            logger.debug("write to a %s subscriber failed", self.transport, exc_info=True)
            return
        self._writing = asyncio.get_running_loop().create_task(self._write_rest(coro, yielded))

    async def _write_rest(self, coro: Coroutine[Any, Any, None] | None, yielded: Any) -> None:
        assert self._deliver is not None and self._on_cut_off is not None
        try:
            if coro is not None:
                await _Resume(coro, yielded)
            while self._queue and not (self.cut_off or self.closed):
                await self._deliver(self._queue.popleft())
            if self.cut_off and not self.closed:
                await self._on_cut_off()
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-write; its disconnect cleans up
            logger.debug("write to a %s subscriber failed", self.transport, exc_info=True)
        finally:
            self._writing = None

    def stop_writing(self) -> None:
        if self._writing is not None and self._writing is not asyncio.current_task():
            self._writing.cancel()

    async def next(self) -> Broadcast | None:
        """The next broadcast, waiting for one; None once cut off (the caller then closes)."""
        while True:
            if self.cut_off or self.closed:
                return None
            if self._queue:
                return self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()


class _Group:
    __slots__ = ("feeds", "channel", "ready", "task")

    def __init__(self) -> None:
        self.feeds: set[Feed] = set()
        self.channel: str | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class FanoutHub:
    """This event loop's subscriptions: groups joined on the channel layer, and who wants each."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._groups: dict[str, _Group] = {}
        self._per_address: Counter[str] = Counter()
        self._open = 0
        self._renewer: asyncio.Task[None] | None = None

    # Admission ------------------------------------------------------------------------------
    def open(self, host: str | None, transport: str) -> Feed:
        """A new subscriber from `host`, or Refused when a cap is reached."""
        per_address, total = settings.WS_MAX_CONNECTIONS_PER_ADDRESS, settings.WS_MAX_CONNECTIONS
        PER_ADDRESS_LIMIT.set(per_address)
        PROCESS_LIMIT.set(total)
        QUEUE_LIMIT.set(settings.WS_QUEUE_MESSAGES)
        address = address_key(host)
        if self._per_address[address] >= per_address:
            REFUSED.labels("per_address").inc()
            raise Refused("per_address", f"too many live connections from your address: at most {per_address}; close one first")
        if self._open >= total:
            REFUSED.labels("server_full").inc()
            raise Refused("server_full", f"this server holds its maximum of {total} live connections; retry shortly")
        self._per_address[address] += 1
        self._open += 1
        CONNECTIONS.labels(transport).inc()
        return Feed(self, address, transport, settings.WS_QUEUE_MESSAGES)

    async def close(self, feed: Feed) -> None:
        """Forgets `feed`: leaves its groups and frees its place under the caps (idempotent)."""
        if feed.closed:
            return
        feed.closed = True
        feed._ready.set()
        self._per_address[feed.address] -= 1
        if self._per_address[feed.address] <= 0:
            del self._per_address[feed.address]
        self._open -= 1
        CONNECTIONS.labels(feed.transport).dec()
        await self.leave(feed, list(feed.groups))

    # Groups ---------------------------------------------------------------------------------
    async def join(self, feed: Feed, group: str) -> None:
        """Adds `feed` to `group`, joining it on the channel layer first if this process is new to it."""
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _Group()
            state.task = asyncio.get_running_loop().create_task(self._read(group, state))
        state.feeds.add(feed)
        feed.groups.add(group)
        try:
            await asyncio.shield(state.ready)
        except Exception:
            await self.leave(feed, [group])
            raise
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_memberships())

    async def leave(self, feed: Feed, groups: list[str]) -> None:
        for group in groups:
            feed.groups.discard(group)
            state = self._groups.get(group)
            if state is not None:
                state.feeds.discard(feed)
                await self._release_if_unused(group, state)

    async def _release_if_unused(self, group: str, state: _Group) -> None:
        if state.feeds or self._groups.get(group) is not state:
            return
        del self._groups[group]
        if state.task is not None:
            state.task.cancel()
        if state.channel is not None:
            try:
                await self.layer.group_discard(group, state.channel)
            except Exception:  # the membership expires on its own; nothing is sent to a channel no one reads
                logger.warning("could not leave group %s on the channel layer", group, exc_info=True)

    async def _read(self, group: str, state: _Group) -> None:
        """This process's one reader of `group`: every message goes to every local subscriber."""
        try:
            channel = await self.layer.new_channel("fanout")
            await self.layer.group_add(group, channel)
            state.channel = channel
        except Exception as exc:
            if self._groups.get(group) is state:
                del self._groups[group]
            state.ready.set_exception(exc)
            state.ready.exception()  # retrieved: the joiners re-raise it
            return
        state.ready.set_result(None)
        # Released groups stop here too: a cancelled channels_redis receive can surface as a
        # redis TimeoutError rather than CancelledError.
        while self._groups.get(group) is state:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except RedisTimeoutError:
                # redis-py's socket timeout can end channels_redis's blocking pop of an idle group;
                # the messages wait in Redis, so read again at once.
                if self._groups.get(group) is not state:
                    return
                continue
            except Exception:
                if self._groups.get(group) is not state:
                    return
                logger.warning("reading group %s failed; retrying in 1 s", group, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            broadcast = Broadcast(message)
            for feed in list(state.feeds):
                feed.offer(broadcast)

    def _cut_off(self, feed: Feed) -> None:
        """Drops a subscriber that stopped reading; synchronous, so the fan-out never waits for it."""
        feed.cut_off = True
        feed._queue.clear()
        feed._ready.set()
        DROPPED.labels(feed.transport).inc()
        logger.info("cut off a %s subscriber from %s: more than %d messages waiting", feed.transport, feed.address, feed.limit)
        for group in list(feed.groups):
            state = self._groups.get(group)
            if state is not None:
                state.feeds.discard(feed)
                if not state.feeds:
                    asyncio.get_running_loop().create_task(self._release_if_unused(group, state))
        feed.groups.clear()

    async def _renew_memberships(self) -> None:
        while self._groups:
            await asyncio.sleep(MEMBERSHIP_RENEW_SECONDS)
            for group, state in list(self._groups.items()):
                if state.channel is not None:
                    try:
                        await self.layer.group_add(group, state.channel)
                    except Exception:
                        logger.warning("could not renew group %s", group, exc_info=True)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FanoutHub] = weakref.WeakKeyDictionary()


def hub() -> FanoutHub:
    """The hub of the running event loop (one per server process; one per test loop)."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is not configured"
        current = _hubs[loop] = FanoutHub(layer)
    return current
