"""An SMTP sink for tests: a real aiosmtpd server on a free port, in its own thread.

It records every message it accepts, and can be told to refuse (``451``, temporary), reject
(``550``, permanent) or hang before answering, to exercise the outbox's retries.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller

from tests.support import free_port, timeout

Mode = Literal["accept", "refuse", "reject", "hang", "record-then-hang"]


@dataclass
class Received:
    to: list[str]
    message: EmailMessage
    at: float
    """``time.time()`` when it arrived."""

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def kind(self) -> str:
        return str(self.message["X-Healthmed-Kind"])

    def invitation(self) -> Any | None:
        """The ``text/calendar`` part parsed with icalendar (None without one)."""
        import icalendar

        for part in self.message.walk():
            if part.get_content_type() == "text/calendar":
                return icalendar.Calendar.from_ical(part.get_content())
        return None


@dataclass
class _Handler:
    sink: MailSink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        with sink.lock:
            mode = sink.mode
            if sink.refuse_next > 0:
                sink.refuse_next -= 1
                mode = "refuse"
            sink.attempts += 1
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "refuse":
            return "451 4.3.0 try again later"
        if mode == "reject":
            return "550 5.1.1 mailbox unavailable"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with sink.lock:
            sink.received.append(
                Received(to=list(envelope.rcpt_tos), message=message, at=time.time())
            )
        if mode == "record-then-hang":  # the message arrived; its sender never hears so
            await asyncio.sleep(3600)
        return "250 2.0.0 accepted"


@dataclass
class MailSink:
    port: int = field(default_factory=free_port)
    mode: Mode = "accept"
    refuse_next: int = 0
    """Refuse (451) this many messages before applying ``mode``."""
    attempts: int = 0
    received: list[Received] = field(default_factory=list)
    """Every message accepted (``record-then-hang``: received, but never answered)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailSink:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self, to: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if to is None or to in r.to]

    def wait_for(self, count: int, seconds: float = 10, to: str | None = None) -> list[Received]:
        """Block until at least ``count`` messages (to ``to``) arrived; those messages."""
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            found = self.messages(to)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"expected {count} messages, got {len(self.messages(to))}")

    async def await_for(
        self, count: int, seconds: float = 10, to: str | None = None
    ) -> list[Received]:
        """``wait_for`` for async tests (polls without blocking the loop)."""
        deadline = time.monotonic() + timeout(seconds)
        while time.monotonic() < deadline:
            found = self.messages(to)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise TimeoutError(f"expected {count} messages, got {len(self.messages(to))}")
