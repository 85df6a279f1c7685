"""S3 adapter of the blob store port, through aioboto3 (production).

Objects live at ``<prefix>/<blob id>`` in one bucket. A writer buffers at most one part
(``part_size``, at least S3's 5 MiB minimum): a blob that fits in one part is one ``PutObject``
at commit; a larger one is a multipart upload, completed at commit (the object appears all at
once) and aborted on ``abort``. Give the bucket a lifecycle rule that aborts incomplete
multipart uploads, for writers killed mid-way. The endpoint and credentials follow the standard
AWS configuration (``AWS_ENDPOINT_URL_S3``, ``AWS_*``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from engine.records._blobs import READ_CHUNK, BlobNotFound, check_blob_id
from engine.records._blobs import blob_store_unavailable as _unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from engine.records._blobs import BlobWriter

MIN_PART = 5 * 1024 * 1024


def _is_missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


class _S3Writer:
    def __init__(self, store: S3BlobStore, key: str) -> None:
        self._store = store
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False

    async def _flush_part(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            answer = await client.create_multipart_upload(Bucket=bucket, Key=self._key)
            self._upload_id = answer["UploadId"]
        number = len(self._parts) + 1
        answer = await client.upload_part(
            Bucket=bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self._buffer.clear()

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        self._buffer += data
        if len(self._buffer) >= self._store.part_size:
            try:
                await self._flush_part()
            except Exception as exc:
                await self.abort()
                raise _unavailable(exc) from exc

    async def commit(self) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        client, bucket = self._store.client, self._store.bucket
        try:
            if self._upload_id is None:
                await client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    await self._flush_part()
                await client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except Exception as exc:
            await self.abort()
            raise _unavailable(exc) from exc
        self._closed = True
        self._buffer.clear()

    async def abort(self) -> None:
        self._closed = True
        self._buffer.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):
                await self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._key, UploadId=upload_id
                )


class S3BlobStore:
    """Blobs as objects in one S3 bucket under a prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        stack: contextlib.AsyncExitStack,
        part_size: int,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.part_size = part_size
        self._stack = stack

    @classmethod
    async def open(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        part_size: int = MIN_PART,
    ) -> S3BlobStore:
        import aioboto3

        if not bucket:
            raise ValueError("s3 blob url needs a bucket: s3://<bucket>/<prefix>")
        stack = contextlib.AsyncExitStack()
        session = aioboto3.Session()
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=endpoint_url, region_name=region_name)
        )
        return cls(bucket, prefix, client, stack, max(part_size, MIN_PART))

    def key(self, blob_id: str) -> str:
        check_blob_id(blob_id)
        return f"{self.prefix}/{blob_id}" if self.prefix else blob_id

    async def open_writer(self, blob_id: str) -> BlobWriter:
        return _S3Writer(self, self.key(blob_id))

    async def read(self, blob_id: str) -> AsyncIterator[bytes]:
        key = self.key(blob_id)
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                raise BlobNotFound(blob_id) from None
            raise _unavailable(exc) from exc
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk
        except Exception as exc:
            raise _unavailable(exc) from exc
        finally:
            body.close()

    async def exists(self, blob_id: str) -> bool:
        key = self.key(blob_id)
        try:
            await self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise _unavailable(exc) from exc
        return True

    async def delete(self, blob_id: str) -> None:
        key = self.key(blob_id)
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self._stack.aclose()
