"""Small secrets sealed the way record bytes are: a fresh data key wrapped by the master key.

:class:`Sealer` serves whatever must never sit in the store in the clear but is not a record
(a TOTP secret, a record's title and filename): ``seal`` asks the key wrapper (local master key
or KMS, :mod:`._keys`) for a fresh data key bound to ``context``, encrypts the bytes with
AES-256-GCM under it (the context is the associated data too) and returns a
:class:`SealedValue` to store; ``unseal`` reverses it. A sealed value copied under another
context (another user, another record) does not open: ``IntegrityError``.

A caller that seals several fields of one object can seal them under one data key with
:meth:`Sealer.seal_with` (the record's own key), so one KMS call serves them all.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.records._crypto import KEY_BYTES, IntegrityError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from engine.records._keys import KeyWrapper

_NONCE_BYTES = 12


class SealedValue(msgspec.Struct, frozen=True, kw_only=True):
    """What the store holds: the provider, the wrapped data key and the ciphertext (base64url)."""

    provider: str
    wrapped_key: str
    nonce: str
    ciphertext: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode())
    except ValueError:
        raise IntegrityError("sealed value is not base64") from None


def _aad(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def seal_with(key: bytes, plaintext: bytes, context: Mapping[str, str]) -> tuple[str, str]:
    """Encrypt under a data key the caller already holds: ``(nonce, ciphertext)``, base64url."""
    if len(key) != KEY_BYTES:
        raise ValueError("AES-256 needs a 32-byte key")
    nonce = os.urandom(_NONCE_BYTES)
    return _b64(nonce), _b64(AESGCM(key).encrypt(nonce, plaintext, _aad(context)))


def open_with(key: bytes, nonce: str, ciphertext: str, context: Mapping[str, str]) -> bytes:
    """Reverse :func:`seal_with`; ``IntegrityError`` if it does not verify for ``context``."""
    if len(key) != KEY_BYTES:
        raise IntegrityError("data key has the wrong length")
    try:
        return AESGCM(key).decrypt(_unb64(nonce), _unb64(ciphertext), _aad(context))
    except InvalidTag:
        raise IntegrityError("sealed value does not verify") from None


class Sealer:
    """Seals small values under a fresh wrapped data key each. ``keys`` returns the open key
    wrapper (the record service opens it at start)."""

    def __init__(self, keys: Callable[[], KeyWrapper]) -> None:
        self._keys = keys

    async def seal(self, plaintext: bytes, context: Mapping[str, str]) -> SealedValue:
        wrapper = self._keys()
        key, wrapped = await wrapper.generate(context)
        nonce, ciphertext = seal_with(key, plaintext, context)
        return SealedValue(
            provider=wrapper.name, wrapped_key=_b64(wrapped), nonce=nonce, ciphertext=ciphertext
        )

    async def unseal(self, sealed: SealedValue, context: Mapping[str, str]) -> bytes:
        wrapper = self._keys()
        if sealed.provider != wrapper.name:
            raise IntegrityError(f"sealed by {sealed.provider!r}, not {wrapper.name!r}")
        key = await wrapper.unwrap(_unb64(sealed.wrapped_key), context)
        return open_with(key, sealed.nonce, sealed.ciphertext, context)
