"""A pass-through proxy in front of the Stripe emulator that holds chosen requests until the test
lets them go: before they reach the emulator (Stripe slow) or after it answered (a slow, stale read).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

WAIT_SECONDS = 30  # bounded waits for events; never a timing assertion


@dataclass
class Hold:
    method: str
    path: re.Pattern[str]
    after_answer: bool
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    armed: bool = True


class Gate:
    """A pass-through proxy to the emulator that holds the first request matching each Hold."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.holds: list[Hold] = []
        self.lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _pass(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hold = gate.take(self.command, self.path)
                if hold and not hold.after_answer:
                    hold.arrived.set()
                    hold.release.wait(WAIT_SECONDS)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                answer = httpx.request(self.command, gate.upstream + self.path, headers=headers, content=body, timeout=WAIT_SECONDS)
                if hold and hold.after_answer:
                    hold.arrived.set()
                    hold.release.wait(WAIT_SECONDS)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self, method: str, path: str, *, after_answer: bool = False) -> Hold:
        hold = Hold(method, re.compile(path), after_answer)
        with self.lock:
            self.holds.append(hold)
        return hold

    def take(self, method: str, path: str) -> Hold | None:
        with self.lock:
            for hold in self.holds:
                if hold.armed and hold.method == method and hold.path.fullmatch(path.split("?")[0]):
                    hold.armed = False
                    return hold
        return None

    def close(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
