"""``HEALTHMED_MAIL_URL``: where e-mail goes, parsed and checked.

Its own module so that the settings (``engine.config``, which refuses a bad URL at start) and
the transports (:mod:`engine.notifications._transports`, which connect to it) share one parser
without the settings importing the notifications package that imports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

Scheme = Literal["smtp", "smtps", "ses", "file"]
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


@dataclass(frozen=True)
class MailTarget:
    """A parsed ``HEALTHMED_MAIL_URL`` (the password never appears in its ``repr``)."""

    scheme: Scheme
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = None
    path: str = ""

    def __repr__(self) -> str:
        where = self.path if self.scheme == "file" else f"{self.host}:{self.port}"
        return f"MailTarget({self.scheme}://{where})"


def parse_mail_url(url: str) -> MailTarget:
    """Parse and check ``HEALTHMED_MAIL_URL``; ``ValueError`` says what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected smtp://host:port, smtps://host:port, ses://region or file://dir")
    if scheme == "file":
        if not rest:
            raise ValueError("file:// needs a folder, e.g. file:///var/lib/healthmed/mail")
        return MailTarget(scheme="file", path=rest)
    if scheme == "ses":
        if not _REGION.fullmatch(rest):
            raise ValueError(f"ses:// needs an AWS region such as sa-east-1, got {rest!r}")
        return MailTarget(scheme="ses", host=rest)
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"unsupported scheme {scheme!r}: use smtp, smtps, ses or file")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{scheme}:// takes only [user:password@]host[:port]")
    return MailTarget(
        scheme=scheme,  # type: ignore[arg-type]
        host=parts.hostname,
        port=port or (465 if scheme == "smtps" else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
