"""The KMS key wrapper against moto's KMS over HTTP, with the real aioboto3 client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioboto3
import pytest
from aiobotocore.config import AioConfig

from engine.errors import Unavailable
from engine.records import IntegrityError, KmsKeyWrapper
from tests.support import free_port, timeout


@pytest.fixture
async def kms_key(moto_endpoint: str) -> str:
    async with aioboto3.Session().client("kms", endpoint_url=moto_endpoint) as kms:
        answer = await kms.create_key(Description="healthmed test master key")
        return str(answer["KeyMetadata"]["KeyId"])


@pytest.fixture
async def wrapper(moto_endpoint: str, kms_key: str) -> AsyncIterator[KmsKeyWrapper]:
    opened = await KmsKeyWrapper.open(kms_key, endpoint_url=moto_endpoint)
    yield opened
    await opened.close()


async def test_generated_data_key_unwraps_to_the_same_key(wrapper: KmsKeyWrapper) -> None:
    """GenerateDataKey gives a 32-byte key; Decrypt of its blob gives it back."""
    context = {"patient_id": "P1", "record_id": "R1"}
    key, wrapped = await wrapper.generate(context)
    assert len(key) == 32
    assert key not in wrapped
    assert await wrapper.unwrap(wrapped, context) == key


async def test_each_record_gets_a_fresh_data_key(wrapper: KmsKeyWrapper) -> None:
    """Two data keys are never the same."""
    context = {"patient_id": "P1", "record_id": "R1"}
    (a, _), (b, _) = await wrapper.generate(context), await wrapper.generate(context)
    assert a != b


async def test_a_wrapped_key_is_bound_to_its_encryption_context(wrapper: KmsKeyWrapper) -> None:
    """Another record's context does not unwrap the key (IntegrityError, not a 503)."""
    _, wrapped = await wrapper.generate({"patient_id": "P1", "record_id": "R1"})
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(wrapped, {"patient_id": "P1", "record_id": "R2"})


async def test_a_tampered_wrapped_key_is_an_integrity_error(wrapper: KmsKeyWrapper) -> None:
    """A flipped byte in a wrapped key is reported as an integrity failure, not a 503."""
    context = {"patient_id": "P1", "record_id": "R1"}
    _, wrapped = await wrapper.generate(context)
    tampered = bytearray(wrapped)
    tampered[-1] ^= 0x01
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(bytes(tampered), context)


async def test_an_unreachable_kms_is_unavailable(kms_key: str) -> None:
    """No KMS answering → Unavailable (503), never a crash."""
    fast_fail = AioConfig(connect_timeout=timeout(0.5), retries={"max_attempts": 1})
    dead = await KmsKeyWrapper.open(
        kms_key, endpoint_url=f"http://127.0.0.1:{free_port()}", config=fast_fail
    )
    try:
        with pytest.raises(Unavailable):
            await dead.generate({"patient_id": "P1", "record_id": "R1"})
    finally:
        await dead.close()
