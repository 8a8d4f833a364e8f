"""The SANDBOX stand-ins the journeys need beside daphne, each on a free port: the SMTP mail sink
(read through /sandbox/mailbox/) and the Stripe emulator (sending webhooks to daphne)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

WEBHOOK_SECRET = "whsec_e2e_journeys_0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within 20 s; see {log}")


@contextmanager
def sandbox_services(root: Path, artifacts: Path, app_port: int) -> Iterator[dict[str, str]]:
    """Starts the sink and the emulator; yields the environment daphne needs to use them."""
    mail_port, stripe_port = free_port(), free_port()
    mailbox = artifacts / "mailbox"
    shutil.rmtree(mailbox, ignore_errors=True)  # each run reads only its own mail
    env = {
        "EMAIL_URL": f"smtp://127.0.0.1:{mail_port}",
        "SANDBOX_MAILBOX_DIR": str(mailbox),
        "STRIPE_TEST_SECRET_KEY": "",
        "STRIPE_EMULATOR_URL": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_EMULATOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    child_env = {**os.environ, **env}
    commands = {
        "mail sink": ([sys.executable, "manage.py", "mail_sink", "--port", str(mail_port), "--dir", str(mailbox)], mail_port),
        "stripe emulator": ([sys.executable, "manage.py", "stripe_emulator", "--port", str(stripe_port), "--webhook-url", f"http://127.0.0.1:{app_port}/billing/stripe/webhook/"], stripe_port),
    }
    started: list[tuple[subprocess.Popen[bytes], object]] = []
    try:
        for name, (command, port) in commands.items():
            log_path = artifacts / f"{name.replace(' ', '-')}.log"
            log = log_path.open("w")
            process = subprocess.Popen(command, cwd=root, env=child_env, stdout=log, stderr=subprocess.STDOUT)
            started.append((process, log))
            _wait_for_port(port, process, name, log_path)
        httpx.get(f"http://127.0.0.1:{stripe_port}/_emulator/health", timeout=5).raise_for_status()
        yield env
    finally:
        for process, log in started:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()  # type: ignore[attr-defined]
