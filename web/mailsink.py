"""The SANDBOX mail sink: an SMTP server (aiosmtpd) that keeps every message in a Maildir.

`make run` starts it where EMAIL_URL points (smtp://127.0.0.1:1025 by default); the mailbox pages
(`/sandbox/mailbox/`) read the same folder. Nothing is ever relayed onwards.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

# Messages above this size are refused by the sink (the app's own mails are a few kilobytes).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


def start(directory: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """Starts the sink in a background thread; `.stop()` it when done."""
    for part in ("tmp", "new", "cur"):  # a Maildir, even inside a folder that already exists
        (directory / part).mkdir(parents=True, exist_ok=True)
    controller = Controller(Mailbox(directory), hostname=host, port=port, data_size_limit=MAX_MESSAGE_BYTES)
    controller.start()
    return controller


@dataclass(frozen=True)
class StoredMail:
    key: str
    received: datetime
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", "(no subject)"))

    @property
    def sender(self) -> str:
        return str(self.message.get("From", ""))

    @property
    def recipients(self) -> str:
        return str(self.message.get("X-RcptTo") or self.message.get("To", ""))

    def part(self, subtype: str) -> str | None:
        body = self.message.get_body(preferencelist=(subtype,))
        return body.get_content() if body is not None and body.get_content_subtype() == subtype else None

    @property
    def text(self) -> str | None:
        return self.part("plain")

    @property
    def html(self) -> str | None:
        return self.part("html")


class MailStore:
    """Reads (and clears) what the sink kept."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _box(self) -> mailbox.Maildir | None:
        if not (self.directory / "cur").is_dir():
            return None
        return mailbox.Maildir(self.directory, factory=None, create=False)

    def _load(self, box: mailbox.Maildir, key: str) -> StoredMail:
        stored = box[key]
        message = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(message, EmailMessage)
        return StoredMail(key=key, received=datetime.fromtimestamp(stored.get_date(), tz=timezone.utc), message=message)

    def messages(self, limit: int = 200) -> list[StoredMail]:
        box = self._box()
        if box is None:
            return []
        mails = [self._load(box, key) for key in box.keys()]
        return sorted(mails, key=lambda mail: mail.received, reverse=True)[:limit]

    def get(self, key: str) -> StoredMail | None:
        box = self._box()
        if box is None:
            return None
        try:
            return self._load(box, key)
        except KeyError:
            return None

    def clear(self) -> int:
        box = self._box()
        if box is None:
            return 0
        count = len(box)
        box.clear()
        return count
