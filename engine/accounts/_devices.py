"""Device tokens: proof that a client logged in to an account successfully before.

OWASP's answer to lockout attacks ("Slow brute force and device cookies"): a successful login
gives the client a token naming a random device id, signed (HMAC-SHA256) together with the
account it was issued for and its expiry. A later login attempt carrying a valid token of the
same account is limited in that device's own gate, not in the gate of unknown clients an
attacker can fill (:mod:`engine.accounts._ratelimit`), so a doctor whose public CRM and UF
someone is guessing at still logs in from the browser or app used before.

The token grants nothing else: the password (and the code) is still needed, it opens no
session, and a token presented for another account is simply not valid there. It carries no
user id or identifier (the account is inside the MAC only), so it says nothing to whoever
reads it. Format: ``d1.<device id>.<expiry, epoch s>.<MAC>``, at most ``MAX_LENGTH``
characters. The MAC key is derived from the JWT secret, so no new secret to manage and
rotating that secret also voids every device token (clients count as new devices until they
log in again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

PREFIX = "d1"
LIFETIME_SECONDS = 90 * 24 * 3600
"""A device is remembered for 90 days after its last successful login."""
MAX_LENGTH = 128
COOKIE = "healthmed_device"
"""The cookie a browser keeps the token in (``HttpOnly``, ``SameSite=Strict``, ``/v1/auth``)."""


class DeviceTokens:
    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(secret.encode(), b"healthmed device token v1", hashlib.sha256).digest()
        self._clock = clock

    def _mac(self, user_id: str, device: str, expires: int) -> str:
        message = f"{user_id}\x1f{device}\x1f{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, user_id: str, device: str | None = None) -> str:
        """A token for ``user_id``: for ``device`` (renewed) or a new device."""
        device = device or secrets.token_urlsafe(12)
        expires = int(self._clock()) + LIFETIME_SECONDS
        return f"{PREFIX}.{device}.{expires}.{self._mac(user_id, device, expires)}"

    def device(self, token: str | None, user_id: str) -> str | None:
        """The device id of a valid, unexpired token issued for ``user_id``, else None."""
        if not token or len(token) > MAX_LENGTH:
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit():
            return None
        _, device, expires, mac = parts
        if int(expires) <= self._clock():
            return None
        if not hmac.compare_digest(mac, self._mac(user_id, device, int(expires))):
            return None
        return device
