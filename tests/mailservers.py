"""Real SMTP peers on loopback: a working server (aiosmtpd), and ones that misbehave."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = email.message_from_bytes(self.raw, policy=default)  # type: ignore[assignment]
        return parsed


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps what it receives."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Recipients answered with 550 at RCPT TO.
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                )
            )
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received]


class _DropAtQuit(SMTP):
    """Accepts every message, then hangs up on QUIT without a reply."""

    async def smtp_QUIT(self, arg: str) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.abort()


class _Controller(Controller):
    def __init__(self, handler: Any, drop_at_quit: bool, **kwargs: Any) -> None:
        self.drop_at_quit = drop_at_quit
        # aiosmtpd connects to its own port to check it is up, so it needs a real number.
        super().__init__(handler, hostname="127.0.0.1", port=closed_port(), **kwargs)

    def factory(self) -> SMTP:
        if self.drop_at_quit:
            return _DropAtQuit(self.handler, hostname="smtp.example.test")
        return SMTP(self.handler, hostname="smtp.example.test")


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: Inbox


@contextmanager
def smtp_server(drop_at_quit: bool = False) -> Iterator[SmtpServer]:
    inbox = Inbox()
    controller = _Controller(inbox, drop_at_quit)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, inbox)
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        listener.close()


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
