"""Master key providers: each record's data key is stored only wrapped by a master key.

* :class:`LocalKeyWrapper` (embedded default): the 32-byte ``HEALTHMED_MASTER_KEY`` (generated
  into the data directory with mode 0600 when absent) wraps data keys with AES-256-GCM.
* :class:`KmsKeyWrapper` (production, ``HEALTHMED_KMS_KEY_ID``): AWS KMS ``GenerateDataKey``
  and ``Decrypt`` through aioboto3; the master key never leaves KMS. The endpoint follows the
  standard AWS configuration (``AWS_ENDPOINT_URL_KMS``, ``AWS_ENDPOINT_URL``, region, ...).

Both bind the wrapped key to an *encryption context* (record id and owner id): a wrapped key
copied onto another record does not unwrap. Unwrapping failures that mean "these bytes are not
a key we wrapped for this record" raise ``IntegrityError``; an unreachable KMS raises
``Unavailable``.

Deleting a record's metadata destroys its wrapped key, which makes any copy of the blob
unreadable (crypto-shredding).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import Unavailable
from engine.records._crypto import KEY_BYTES, IntegrityError, new_data_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.config import Settings

_LOCAL_VERSION = b"\x01"
_NONCE_BYTES = 12


class KeyWrapper(Protocol):
    """Creates wrapped data keys and unwraps them."""

    @property
    def name(self) -> str:
        """Stored with each record, so a record is never unwrapped by the wrong provider."""

    async def generate(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key: ``(plaintext key, wrapped key)``."""

    async def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The plaintext data key; ``IntegrityError`` if it is not ours for this context."""

    async def close(self) -> None: ...


def _aad(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


class LocalKeyWrapper:
    """Wraps data keys with AES-256-GCM under a local master key.

    Wrapped form: ``0x01 | nonce (12) | AES-GCM(master, nonce, data key, aad=context)``.
    """

    name = "local"

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    async def generate(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        key = new_data_key()
        nonce = os.urandom(_NONCE_BYTES)
        return key, _LOCAL_VERSION + nonce + self._aead.encrypt(nonce, key, _aad(context))

    async def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if wrapped[:1] != _LOCAL_VERSION or len(wrapped) != 1 + _NONCE_BYTES + KEY_BYTES + 16:
            raise IntegrityError("wrapped key has an unknown format")
        nonce, sealed = wrapped[1 : 1 + _NONCE_BYTES], wrapped[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(context))
        except InvalidTag:
            raise IntegrityError("wrapped key does not verify") from None

    async def close(self) -> None:
        return None


class KmsKeyWrapper:
    """AWS KMS envelope encryption: ``GenerateDataKey`` (AES_256) and ``Decrypt``.

    One aioboto3 client, opened by :meth:`open` and closed by :meth:`close`.
    """

    name = "kms"

    def __init__(self, key_id: str, client: Any, stack: contextlib.AsyncExitStack) -> None:
        self._key_id = key_id
        self._client = client
        self._stack = stack

    @classmethod
    async def open(
        cls,
        key_id: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        config: Any = None,
    ) -> KmsKeyWrapper:
        """``config`` is an optional ``AioConfig`` (timeouts, retries)."""
        import aioboto3

        stack = contextlib.AsyncExitStack()
        session = aioboto3.Session()
        client = await stack.enter_async_context(
            session.client("kms", endpoint_url=endpoint_url, region_name=region_name, config=config)
        )
        return cls(key_id, client, stack)

    async def generate(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = await self._client.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=dict(context)
            )
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(
                "the key service did not answer", code="key_service_unavailable"
            ) from exc
        return bytes(answer["Plaintext"]), bytes(answer["CiphertextBlob"])

    async def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = await self._client.decrypt(
                CiphertextBlob=wrapped, EncryptionContext=dict(context), KeyId=self._key_id
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise IntegrityError("wrapped key does not verify") from None
            raise Unavailable(
                "the key service did not answer", code="key_service_unavailable"
            ) from exc
        except BotoCoreError as exc:
            raise Unavailable(
                "the key service did not answer", code="key_service_unavailable"
            ) from exc
        key = bytes(answer["Plaintext"])
        if len(key) != KEY_BYTES:
            raise IntegrityError("unwrapped key has the wrong length")
        return key

    async def close(self) -> None:
        await self._stack.aclose()


async def open_key_wrapper(settings: Settings) -> KeyWrapper:
    """KMS when ``HEALTHMED_KMS_KEY_ID`` is set, else the local master key."""
    if settings.kms_key_id:
        return await KmsKeyWrapper.open(settings.kms_key_id)
    if not settings.master_key:
        raise RuntimeError("no master key: set HEALTHMED_MASTER_KEY or HEALTHMED_KMS_KEY_ID")
    return LocalKeyWrapper(settings.master_key)
