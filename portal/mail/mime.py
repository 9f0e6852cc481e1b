"""The MIME bytes of an outbox message, built once when it is queued: the text and HTML as
alternatives, headers folded as SMTP servers expect them; and their DKIM signature, added as
they are sent."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formatdate, parseaddr
from typing import Any

from flask_mail import sanitize_address, sanitize_subject

from portal.core.config import dkim_key
from portal.core.models import OutboxMessage


class _SmtpPolicy(Compat32):
    """The plain (compat32) policy with CRLF line ends. A header that is ASCII and fits on one
    line is written as it is, which is what compat32's folding makes of it, at a fraction of the
    cost; anything else is folded by compat32."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and "\r" not in value
            and "\n" not in value
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        folded: bytes = super().fold_binary(name, value)
        return folded


_SMTP_POLICY = _SmtpPolicy(linesep="\r\n")


@functools.lru_cache(maxsize=8)
def address(address: str) -> str:
    """Flask-Mail's header form of an address (its sender's is the same every time)."""
    return sanitize_address(address, "utf-8")


@functools.lru_cache(maxsize=8)
def sender_domain(sender: str | tuple[str, str]) -> str | None:
    """The domain of ``MAIL_DEFAULT_SENDER`` (``Portal <portal@example.com>`` or a (name,
    address) pair), in ASCII; None when it names none."""
    mailbox = sender[1] if isinstance(sender, tuple) else parseaddr(sender)[1]
    _, at, domain = mailbox.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not domain:
        return None
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def build(
    sender: str,
    message: OutboxMessage,
    *,
    reply_to: str | None = None,
    language: str | None = None,
) -> bytes:
    """The message: ``multipart/alternative`` of its text and HTML (the text alone when there is
    no HTML), UTF-8, with the outbox's Message-ID, marked automatic (RFC 3834, so that
    out-of-office replies stay away); ``reply_to`` where replies should go, ``language`` the
    BCP 47 tag of the language it is written in (``Content-Language``).

    Several times cheaper than Flask-Mail's ``Message.as_bytes``: no host name look-up for a
    Message-ID that is replaced anyway, the plain email policy instead of header re-parsing,
    the boundary drawn once (the generator would compile a regular expression per boundary to
    search the text), and short headers written without folding machinery.
    """
    text, html = message.text_body, message.html_body
    mime: MIMEText | MIMEMultipart
    if html:
        mime = MIMEMultipart("alternative", boundary=_boundary(text, html))
        mime.attach(MIMEText(text, "plain", "utf-8"))
        mime.attach(MIMEText(html, "html", "utf-8"))
    else:
        mime = MIMEText(text, "plain", "utf-8")
    if message.subject:
        mime["Subject"] = sanitize_subject(message.subject, "utf-8")
    mime["From"] = address(sender)
    mime["To"] = sanitize_address(message.to_address, "utf-8")
    if reply_to:
        mime["Reply-To"] = sanitize_address(reply_to, "utf-8")
    mime["Date"] = formatdate(localtime=True)
    mime["Message-ID"] = message.message_id  # the same on every attempt
    if language:
        mime["Content-Language"] = language
    mime["Auto-Submitted"] = "auto-generated"
    return mime.as_bytes(policy=_SMTP_POLICY)


def _boundary(*texts: str) -> str:
    """A random multipart boundary that occurs in none of ``texts``."""
    while True:
        boundary = "=" * 15 + secrets.token_hex(16) + "=="
        if not any(boundary in text for text in texts):
            return boundary


#: The header fields the DKIM signature covers, each named twice: the first covers the field,
#: the second its absence, so that one added on the way (a second From, a Reply-To where there
#: was none) breaks the signature (RFC 6376, 8.15).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"content-type",
    b"mime-version",
    b"content-language",
    b"auto-submitted",
)


class SigningError(Exception):
    """The message cannot be signed as it is (it will not be, on any attempt)."""


class DkimSigner:
    """Signs a message's bytes for ``domain`` with the key published at
    ``<selector>._domainkey.<domain>``: rsa-sha256, relaxed/relaxed. The key is read once."""

    def __init__(self, domain: str, selector: str, key_file: str) -> None:
        self.domain = domain.lower().encode("ascii")
        self.selector = selector.encode("ascii")
        self._key = dkim_key(key_file)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DkimSigner | None:
        """The signer of ``PORTAL_DKIM_*``; None when DKIM is off (``config.load`` has checked
        that the three are set together and that the key is usable)."""
        if not config.get("DKIM_DOMAIN"):
            return None
        # A selector such as 2024 arrives from the environment as a number.
        return cls(
            str(config["DKIM_DOMAIN"]), str(config["DKIM_SELECTOR"]), str(config["DKIM_KEY_FILE"])
        )

    def sign(self, data: bytes) -> bytes:
        """``data`` with its DKIM-Signature header first; nothing may change them after this."""
        # Imported here, as config does: only a portal that signs pays for it.
        import dkim  # type: ignore[import-untyped]

        try:
            signature: bytes = dkim.sign(
                data,
                self.selector,
                self.domain,
                self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=b"rsa-sha256",
                include_headers=[*SIGNED_HEADERS, *SIGNED_HEADERS],
            )
        except dkim.DKIMException as exc:
            raise SigningError(str(exc)) from exc
        return signature + data
