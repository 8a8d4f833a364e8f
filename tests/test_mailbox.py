"""The sandbox mail sink keeps what the app sends over SMTP; /sandbox/mailbox/ shows it (sandbox only)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection
from django.test import Client

from web import mailsink

pytestmark = pytest.mark.django_db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sink(tmp_path: Path, settings: Any) -> Any:
    settings.SANDBOX_MAILBOX_DIR = tmp_path / "mailbox"
    port = free_port()
    controller = mailsink.start(settings.SANDBOX_MAILBOX_DIR, "127.0.0.1", port)
    yield port
    controller.stop()


def send_over_smtp(port: int, subject: str = "Activate your account") -> None:
    connection = get_connection("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=port)
    message = EmailMultiAlternatives(subject, "Open http://127.0.0.1:8000/accounts/confirm-email/MQ:abc/ to activate.", "GPUBROKER <no-reply@gpubroker.local>", ["ada@example.com"], connection=connection)
    message.attach_alternative('<p><a href="http://127.0.0.1:8000/accounts/confirm-email/MQ:abc/">Activate</a></p>', "text/html")
    message.send()


def test_the_sink_keeps_mail_and_the_mailbox_lists_it(sink: int) -> None:
    send_over_smtp(sink, "First")
    send_over_smtp(sink, "Second")
    page = Client().get("/sandbox/mailbox/").content.decode()
    assert "Messages (2)" in page
    assert page.index("Second") < page.index("First")  # newest first
    assert "ada@example.com" in page


def test_a_message_page_shows_both_parts_with_a_clickable_link(sink: int, settings: Any) -> None:
    send_over_smtp(sink)
    mail = mailsink.MailStore(settings.SANDBOX_MAILBOX_DIR).messages()[0]
    response = Client().get(f"/sandbox/mailbox/{mail.key}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'href="http://127.0.0.1:8000/accounts/confirm-email/MQ:abc/"' in page  # text part, linked
    assert 'sandbox="allow-popups' in page and "srcdoc=" in page  # HTML part, scripts off
    assert "plain text + HTML" in page


def test_an_unknown_message_is_404(sink: int) -> None:
    assert Client().get("/sandbox/mailbox/1234.nope/").status_code == 404


def test_delete_all_empties_the_mailbox(sink: int) -> None:
    send_over_smtp(sink)
    client = Client()
    assert client.post("/sandbox/mailbox/").status_code == 302
    assert "Messages (0)" in client.get("/sandbox/mailbox/").content.decode()


def test_the_mailbox_does_not_exist_in_live_mode(settings: Any) -> None:
    settings.GPUBROKER_MODE = "live"
    assert Client().get("/sandbox/mailbox/").status_code == 404
    assert Client().get("/sandbox/mailbox/anything/").status_code == 404


def test_an_empty_mailbox_says_so(settings: Any, tmp_path: Path) -> None:
    settings.SANDBOX_MAILBOX_DIR = tmp_path / "never-created"
    assert "No messages yet" in Client().get("/sandbox/mailbox/").content.decode()


def test_a_sandbox_reachable_from_elsewhere_shows_the_mailbox_only_to_this_machine_or_staff(sink: int) -> None:
    from django.contrib.auth import get_user_model

    send_over_smtp(sink, "Reset your password")
    elsewhere = Client(REMOTE_ADDR="203.0.113.7")
    assert elsewhere.get("/sandbox/mailbox/").status_code == 403
    assert b"Reset your password" not in elsewhere.get("/sandbox/mailbox/").content
    assert elsewhere.post("/sandbox/mailbox/").status_code == 403
    relayed = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert relayed.get("/sandbox/mailbox/").status_code == 403
    signed_in = Client(REMOTE_ADDR="203.0.113.7")
    signed_in.force_login(get_user_model().objects.create_user("ada", "ada@example.com", "pw"))
    assert signed_in.get("/sandbox/mailbox/").status_code == 403
    staff = Client(REMOTE_ADDR="203.0.113.7")
    staff.force_login(get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True))
    assert b"Reset your password" in staff.get("/sandbox/mailbox/").content
    assert b"Reset your password" in Client(REMOTE_ADDR="127.0.0.1").get("/sandbox/mailbox/").content
