"""Real peers for what appyard sends out, on loopback: an SMTP server (aiosmtpd) that keeps
what it receives, and an HTTP endpoint that records webhook deliveries and answers with the
statuses a test asks for."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import free_port

# --- SMTP -----------------------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None, f"no text/{subtype} part"
        return str(found.get_content())


@dataclass
class SmtpSink:
    host: str
    port: int
    received: list[Mail] = field(default_factory=list)
    refuse_next: int = 0  # answer "451 try again later" to this many messages
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def by_recipient(self) -> dict[str, Mail]:
        with self.lock:
            return {r: m for m in self.received for r in m.recipients}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 Try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


# --- webhook receiver -----------------------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 204
    redirect_to: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/appyard"

    def answer(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with made.lock:
                made.deliveries.append(
                    Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status = 302 if made.redirect_to else made.answer()
            self.send_response(status)
            if made.redirect_to:
                self.send_header("Location", made.redirect_to)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", made.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made
    server.shutdown()
    server.server_close()
