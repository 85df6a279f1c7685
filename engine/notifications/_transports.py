"""Mail transports behind one port, chosen by ``HEALTHMED_MAIL_URL``.

=====================================  =========================================================
URL                                    transport
=====================================  =========================================================
``smtp://[user:password@]host[:port]``  SMTP (aiosmtplib), port 25 by default; STARTTLS whenever
                                        the server offers it
``smtps://[user:password@]host[:port]`` SMTP over TLS from the first byte, port 465 by default
``ses://<region>``                     Amazon SES v2 ``SendEmail`` with raw content (aioboto3;
                                        endpoint and credentials from the standard ``AWS_*``
                                        variables)
``file://<folder>``                    one RFC 5322 ``.eml`` file a message, named after its id
                                        (rewriting the same message rewrites the same file)
=====================================  =========================================================

A transport either delivers the message or raises; it never retries by itself (the outbox
does, with backoff). ``send`` is safe to cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiosmtplib

from engine.notifications.mail_url import MailTarget, parse_mail_url

if TYPE_CHECKING:
    from email.message import EmailMessage

    from types_aiobotocore_sesv2.client import SESV2Client

_MESSAGE_FILE = re.compile(r"[0-9A-Za-z_.-]{1,128}")


class Transport(Protocol):
    name: str

    async def send(self, message: EmailMessage, to: str) -> None:
        """Deliver ``message`` to ``to`` or raise."""

    async def close(self) -> None: ...


class FileTransport:
    """``.eml`` files in a folder; written to a temporary name, then renamed (atomic)."""

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{name}.eml"
        temporary = self.folder / f".{name}.{os.getpid()}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, final)

    async def send(self, message: EmailMessage, to: str) -> None:
        name = str(message["Message-ID"]).strip("<>").partition("@")[0]
        if not _MESSAGE_FILE.fullmatch(name):
            raise ValueError("message id cannot name a file")
        await asyncio.to_thread(self._write, name, message.as_bytes())

    async def close(self) -> None:
        return None


class SmtpTransport:
    """One SMTP session a message (aiosmtplib): STARTTLS when offered, or TLS (smtps)."""

    name = "smtp"

    def __init__(self, target: MailTarget, *, timeout: float) -> None:
        self.target = target
        self.timeout = timeout

    async def send(self, message: EmailMessage, to: str) -> None:
        tls = self.target.scheme == "smtps"
        await aiosmtplib.send(
            message,
            recipients=[to],
            hostname=self.target.host,
            port=self.target.port,
            username=self.target.username,
            password=self.target.password,
            use_tls=tls,
            start_tls=False if tls else None,
            timeout=self.timeout,
        )

    async def close(self) -> None:
        return None


class SesTransport:
    """Amazon SES v2 ``SendEmail`` (``Content.Raw``): the message goes as built, with its own
    ``Message-ID`` header (SES also assigns its own id, returned and not needed here)."""

    name = "ses"

    def __init__(self, region: str, sender: str, *, timeout: float) -> None:
        self.region = region
        self.sender = sender
        self.timeout = timeout
        self._stack = contextlib.AsyncExitStack()
        self._client: SESV2Client | None = None
        self._lock = asyncio.Lock()

    async def _conn(self) -> SESV2Client:
        async with self._lock:
            if self._client is None:
                import aioboto3
                from aiobotocore.config import AioConfig

                config = AioConfig(
                    connect_timeout=min(5.0, self.timeout),
                    read_timeout=self.timeout,
                    retries={"mode": "standard", "max_attempts": 2},
                )
                self._client = await self._stack.enter_async_context(
                    aioboto3.Session().client("sesv2", region_name=self.region, config=config)
                )
            return self._client

    async def send(self, message: EmailMessage, to: str) -> None:
        client = await self._conn()
        await client.send_email(
            FromEmailAddress=self.sender,
            Destination={"ToAddresses": [to]},
            Content={"Raw": {"Data": message.as_bytes()}},
        )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


def open_transport(url: str, sender: str, *, timeout: float) -> Transport:
    """The transport ``url`` names (see the module docstring); ``ValueError`` if it is bad."""
    target = parse_mail_url(url)
    if target.scheme == "file":
        return FileTransport(Path(target.path))
    if target.scheme == "ses":
        return SesTransport(target.host, sender, timeout=timeout)
    return SmtpTransport(target, timeout=timeout)
