"""SQLite with a bounded number of open connections: the embedded default's stand-in for the
PostgreSQL pool.

Django opens one SQLite connection per thread and the ASGI handler runs each request's sync code in
a thread of its own, so without a bound a burst opens a connection per request. Here a process-wide
semaphore per database file caps open connections at `OPTIONS["max_connections"]`; a thread that
finds none free waits up to `OPTIONS["connection_timeout"]` seconds, then fails with an
OperationalError, which the site answers 503 with Retry-After (web/overload.py), exactly like a
PostgreSQL pool timeout. A connection gives its slot back when Django closes it at the end of the
request (or when its wrapper is collected, so a dead thread cannot keep a slot forever).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from django.db.backends.sqlite3 import base

_gates: dict[str, threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


class ConnectionsExhausted(base.Database.OperationalError):
    """Every connection of this process is in use and none came free in time."""


def _gate(name: str, size: int) -> threading.BoundedSemaphore:
    with _gates_lock:
        gate = _gates.get(name)
        if gate is None:
            gate = _gates[name] = threading.BoundedSemaphore(size)
        return gate


class DatabaseWrapper(base.DatabaseWrapper):
    _slot: weakref.finalize | None = None

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        self.max_connections = int(params.pop("max_connections", 8))
        self.connection_timeout = float(params.pop("connection_timeout", 2.0))
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        gate = _gate(str(self.settings_dict["NAME"]), self.max_connections)
        if not gate.acquire(timeout=self.connection_timeout):
            raise ConnectionsExhausted(
                f"all {self.max_connections} database connections of this process are busy (waited {self.connection_timeout:g}s)"
            )
        slot = weakref.finalize(self, gate.release)
        try:
            connection = super().get_new_connection(conn_params)
        except BaseException:
            slot()
            raise
        self._slot = slot
        return connection

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            slot, self._slot = self._slot, None
            if slot is not None:
                slot()  # gives the slot back once; a finalize never runs twice
