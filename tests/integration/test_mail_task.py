"""``relay.mail.send`` against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from relay.config import MailSettings, Settings
from relay.retry import FatalTaskError, RetryableTaskError
from relay.runtime import Runtime

SEND = "relay.mail.send"


@dataclass
class Inbox:
    """An SMTP handler that keeps what it accepts and refuses two test domains."""

    port: int = 0
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        domain = address.rsplit("@", 1)[-1]
        if domain == "rejected.test":
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if domain == "busy.test":
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture
def settings(settings: Settings, inbox: Inbox) -> Settings:
    """The suite's settings, with mail going to the loopback server."""
    mail = MailSettings(
        host="127.0.0.1",
        port=inbox.port,
        from_address="relay@example.test",
        timeout=5,
    )
    return settings.model_copy(update={"mail": mail})


def send_direct(runtime: Runtime, *args: Any, key: str | None = None, **kwargs: Any) -> Any:
    """Run the task body in this process (no broker), raising what it raises."""
    task = runtime.celery.tasks[SEND]
    headers = {"idempotency_key": key} if key else None
    return task.apply(args=args, kwargs=kwargs, headers=headers, throw=True).get()


def test_a_mail_is_delivered_once_through_a_worker(
    runtime: Runtime, worker: Any, inbox: Inbox
) -> None:
    html = "<p>Hello <b>Alice</b></p>"
    args = ["alice@example.test", "Welcome to relay", "Hello Alice"]
    headers = {"idempotency_key": "mail-1"}

    first = runtime.celery.send_task(SEND, args=args, kwargs={"html": html}, headers=headers)
    assert first.get(timeout=30) == {"sent": 1, "refused": {}}
    again = runtime.celery.send_task(SEND, args=args, kwargs={"html": html}, headers=headers)
    assert again.get(timeout=30) == {"skipped": "duplicate"}

    assert len(inbox.messages) == 1
    sender, recipients, message = inbox.messages[0]
    assert sender == "relay@example.test"
    assert recipients == ["alice@example.test"]
    assert message["Subject"] == "Welcome to relay"
    assert message["From"] == "relay@example.test"
    assert message["To"] == "alice@example.test"
    assert message["Message-ID"]
    text = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert text is not None
    assert rich is not None
    assert text.get_content().strip() == "Hello Alice"
    assert rich.get_content().strip() == html


def test_html_only_mail_gets_a_plain_text_fallback(runtime: Runtime, inbox: Inbox) -> None:
    html = "<style>p {color: red}</style><h1>Reset</h1><p>Click <a href='x'>here</a>.</p>"
    send_direct(runtime, ["bob@example.test"], "Password reset", "", html=html)

    (_, _, message) = inbox.messages[0]
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    plain = text.get_content()
    assert "Reset" in plain
    assert "Click here." in plain
    assert "color" not in plain
    assert "<" not in plain


def test_a_rejected_recipient_is_fatal(runtime: Runtime, inbox: Inbox) -> None:
    with pytest.raises(FatalTaskError, match="550"):
        send_direct(runtime, "nobody@rejected.test", "Hi", "body")
    assert inbox.messages == []


def test_a_rejected_recipient_fails_the_task_on_a_worker(
    runtime: Runtime, worker: Any, inbox: Inbox
) -> None:
    result = runtime.celery.send_task(SEND, args=["nobody@rejected.test", "Hi", "body"])
    with pytest.raises(Exception, match="550") as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "FatalTaskError"
    assert inbox.messages == []


def test_a_temporarily_refused_recipient_is_retryable(runtime: Runtime, inbox: Inbox) -> None:
    with pytest.raises(RetryableTaskError, match="450"):
        send_direct(runtime, "carol@busy.test", "Hi", "body")


def test_some_refused_recipients_are_reported_not_retried(runtime: Runtime, inbox: Inbox) -> None:
    outcome = send_direct(runtime, ["dan@example.test", "nobody@rejected.test"], "Hi", "body")

    assert outcome["sent"] == 1
    assert list(outcome["refused"]) == ["nobody@rejected.test"]
    assert outcome["refused"]["nobody@rejected.test"].startswith("550")
    assert [r for _, r, _ in inbox.messages] == [["dan@example.test"]]


@pytest.mark.parametrize("address", ["not-an-address", "@example.test", "a@b\r\nBcc: x@y"])
def test_an_invalid_address_is_fatal(runtime: Runtime, inbox: Inbox, address: str) -> None:
    with pytest.raises(FatalTaskError, match="invalid mail"):
        send_direct(runtime, address, "Hi", "body")
    assert inbox.messages == []


def test_a_dead_port_is_retryable(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"mail": MailSettings(host="127.0.0.1", port=free_port(), timeout=2)}
    )
    with pytest.raises(RetryableTaskError, match="cannot reach SMTP server"):
        send_direct(runtime, "erin@example.test", "Hi", "body")


def test_the_password_is_never_shown(
    runtime: Runtime, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTH against a server that offers none: a configuration error, without the secret."""
    mail = MailSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": inbox.port,
            "username": "relay",
            "password": "hunter2-secret",
            "timeout": 5,
        }
    )
    runtime.settings = runtime.settings.model_copy(update={"mail": mail})

    with pytest.raises(FatalTaskError) as raised:
        send_direct(runtime, "frank@example.test", "Hi", "body")

    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(runtime.settings)
    assert "hunter2" not in runtime.settings.model_dump_json()
    assert inbox.messages == []
