"""``relay.mail.send``: outgoing mail over SMTP, with the standard library only.

Failures are classified for the retry policy: the network, a dropped connection and SMTP's
temporary 4xx replies are transient (``RetryableTaskError``); a refused sender or recipient, a
malformed address and any other 5xx reply can never succeed (``FatalTaskError``, dead-lettered at
once). A message sent to several recipients of whom only some are refused is *not* retried, since
the others already have it: the refused ones are returned (and counted in the log) instead.

Delivery is at-least-once. The message's idempotency key is recorded right after the server
accepted the mail (not around the SMTP conversation, which would hold a database write lock for as
long as the server takes), so only a crash between the two can send a duplicate.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from relay import catalog
from relay.config import MailSettings
from relay.retry import FatalTaskError, RetryableTaskError
from relay.services.dataset_text import html_to_text
from relay.tasks.base import RelayTask, relay_task

log = logging.getLogger(__name__)


@relay_task(catalog.SEND_MAIL)
def send_mail(
    self: RelayTask,
    to: str | list[str],
    subject: str,
    body: str | None,
    html: str | None = None,
) -> dict[str, Any]:
    """Send one mail to ``to`` (an address or a list); ``html`` adds an HTML alternative.

    Returns ``{"sent": n, "refused": {address: reply}}``, or ``{"skipped": "duplicate"}`` when
    this message's key was sent already.
    """
    if self.already_processed():
        return {"skipped": "duplicate"}
    settings = self.runtime.settings.mail
    recipients = [to] if isinstance(to, str) else list(to)
    message = build_message(settings.from_address, recipients, subject, body or "", html)
    refused = deliver(settings, message)
    # Record the key only now: a failed send leaves none, so a retry sends again.
    with self.effect() as session:
        if session is None:
            # A concurrent delivery of this message got there first: both have sent it.
            log.warning("mail sent twice", extra={"action": "mail.duplicate", "task": self.name})
    sent = len(recipients) - len(refused)
    log.info(
        "mail sent",
        extra={"action": "mail.sent", "recipients": sent, "refused": len(refused)},
    )
    return {"sent": sent, "refused": refused}


def build_message(
    sender: str, recipients: list[str], subject: str, body: str, html: str | None = None
) -> EmailMessage:
    """The MIME message: plain text, plus an HTML alternative when ``html`` is given.

    With only HTML (an empty ``body``), the plain-text part is derived from it, so that clients
    that do not render HTML, and spam filters that penalise HTML-only mail, get readable text.
    """
    if not recipients:
        raise FatalTaskError("mail has no recipient")
    message = EmailMessage()
    try:
        message["From"] = _address(sender)
        message["To"] = [_address(r) for r in recipients]
        message["Subject"] = subject
    except (ValueError, TypeError) as exc:
        raise FatalTaskError(f"invalid mail header: {exc}") from exc
    message["Message-ID"] = make_msgid(domain=_address(sender).domain or None)
    text = body if body.strip() or not html else html_to_text(html)
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def _address(value: str) -> Address:
    """Parse one address; refuse anything without a local part and a domain."""
    if "\r" in value or "\n" in value:
        raise FatalTaskError(f"invalid mail address {value!r}")
    try:
        parsed = Address(addr_spec=value.strip())
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise FatalTaskError(f"invalid mail address {value!r}: {exc}") from exc
    if not parsed.username or not parsed.domain:
        raise FatalTaskError(f"invalid mail address {value!r}")
    return parsed


def deliver(settings: MailSettings, message: EmailMessage) -> dict[str, str]:
    """Hand ``message`` to the SMTP server; returns the recipients it refused (some, not all).

    Raises ``RetryableTaskError`` or ``FatalTaskError`` as classified by :func:`classify`.
    """
    try:
        smtp = _connect(settings)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify(exc, settings) from exc
    try:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            smtp.login(settings.username, password)
        refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify(exc, settings) from exc
    finally:
        _quit(smtp)
    return {address: _reply(code, text) for address, (code, text) in refused.items()}


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye, ignoring a failure: the mail is accepted (or refused) already, and a failed
    QUIT must not turn a sent mail into a retry, which would send it twice."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _connect(settings: MailSettings) -> smtplib.SMTP:
    if settings.ssl:
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=ssl.create_default_context(),
        )
    return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)


def classify(exc: BaseException, settings: MailSettings) -> RetryableTaskError | FatalTaskError:
    """Map an SMTP or socket failure to the retry policy's two kinds."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = {a: _reply(code, text) for a, (code, text) in exc.recipients.items()}
        # Every recipient refused: retry only if all refusals are temporary (greylisting, a full
        # mailbox), since one permanent refusal will never turn into an acceptance.
        if replies and all(_temporary(code) for code, _ in exc.recipients.values()):
            return RetryableTaskError(f"recipients temporarily refused: {replies}")
        return FatalTaskError(f"recipients refused: {replies}")
    if isinstance(exc, smtplib.SMTPResponseException):
        # SMTPSenderRefused, SMTPDataError, SMTPAuthenticationError, SMTPHeloError, ...
        text = f"{type(exc).__name__}: {_reply(exc.smtp_code, exc.smtp_error)}"
        if _temporary(exc.smtp_code):
            return RetryableTaskError(text)
        return FatalTaskError(text)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableTaskError(f"SMTP server {where} disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # e.g. STARTTLS or AUTH configured but not offered: a configuration error.
        return FatalTaskError(f"SMTP server {where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FatalTaskError(f"TLS certificate of {where} rejected: {exc}")
    if isinstance(exc, OSError):
        # Refused, reset, unreachable, timed out, DNS: the network or the server will recover.
        return RetryableTaskError(f"cannot reach SMTP server {where}: {exc}")
    return FatalTaskError(f"SMTP failure: {exc}")


def _temporary(code: int) -> bool:
    return 400 <= code < 500


def _reply(code: int, text: bytes | str) -> str:
    decoded = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {decoded}"
