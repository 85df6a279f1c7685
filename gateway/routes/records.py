"""Health record (prontuário) routes (docs/API.md "Health record").

Uploads are parsed as a stream (:mod:`gateway.multipart`: python-multipart's incremental
parser fed by ``request.stream()``), and each piece of the ``file`` part goes straight to the
engine's :class:`~engine.records.PendingUpload` (sniffed, hashed, encrypted, written).
Litestar's own form parsing (``UploadFile``) is not used: it buffers the whole body before the
handler runs and spools the plaintext to a temporary file on disk, so a 415 or 413 would only
come after the whole upload and the plaintext would touch the disk.

The global body limit (``HEALTHMED_MAX_BODY_BYTES``) is lifted on the upload route only
(``request_max_body_size=None``) and replaced by ``record_max_bytes`` + ``FORM_OVERHEAD``,
enforced here on the bytes actually received (and on ``Content-Length`` up front), because the
record limit is a runtime setting and route decorators are evaluated at import.

Multipart rules: fields ``file`` (required, once), ``kind`` (required), ``group``, ``title``
(at most ``FIELD_MAX`` bytes of UTF-8). Each field at most once (422 ``duplicate_field``) and
any other field → 422 ``unknown_field``: a form has at most four parts, and a body of many parts
is refused at the first one too many. Fields may come
before or after the file; when they come before, a bad ``kind`` is refused before any byte of
the file is stored.

Downloads are ``Content-Disposition: attachment`` with a sanitised file name (an ASCII fallback
plus RFC 5987 ``filename*``), ``X-Content-Type-Options: nosniff``, a sandboxing CSP and
``Cache-Control: no-store``.
"""

from __future__ import annotations

import inspect
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from engine.errors import Invalid, PayloadTooLarge
from engine.records import (
    GROUP_PATTERN,
    KIND_PATTERN,
    KINDS,
    AccessPage,
    RecordContent,
    RecordInfo,
    RecordPage,
    ShareInfo,
    SharePage,
    check_upload_fields,
    clean_filename,
)
from engine.wire import doc
from gateway.multipart import PartData, PartEnd, PartStart, form_events, malformed
from gateway.problems import problems
from gateway.routes._paging import LIMIT_DEFAULT, Cursor, Limit
from gateway.telemetry import event as log_event

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.records import PendingUpload
    from engine.runtime import Engine

FORM_OVERHEAD = 64 * 1024
"""Body bytes allowed beyond ``record_max_bytes``: boundaries, part headers, small fields."""
FIELD_MAX = 1024
_TEXT_FIELDS = ("kind", "group", "title")

_TAGS = ["health record"]


class ShareCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A share: at least one of ``record_ids`` / ``groups``; ``expires_at`` in the future and at
    most 365 days ahead (RFC 3339)."""

    doctor_id: Annotated[
        str, doc("a doctor's id (422 `unknown_doctor`)", examples=["01JDZ3T6Q4V8K2M5N7P9R1S3T5"])
    ]
    expires_at: Annotated[
        str,
        doc(
            "RFC 3339 with an offset, in the future and at most 365 days ahead (422 "
            "`invalid_time`, `invalid_expiry`)",
            format="date-time",
            examples=["2027-01-31T23:59:59Z"],
        ),
    ]
    record_ids: (
        Annotated[
            list[str],
            msgspec.Meta(
                max_length=50,
                description="ids of your records (422 `unknown_record`, `too_many_records`)",
            ),
        ]
        | None
    ) = None
    groups: (
        Annotated[
            list[str],
            msgspec.Meta(max_length=20),
            doc(
                "group labels, 1-64 of a-z 0-9 . _ - starting and ending with a letter or "
                "digit, case-insensitive (422 `invalid_group`, `too_many_groups`)",
                items={"type": "string", "pattern": GROUP_PATTERN},
                examples=[["cardiologia-2026"]],
            ),
        ]
        | None
    ) = None


# -- the upload form ---------------------------------------------------------------------------


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("the upload is larger than the record limit", code="record_too_large")


async def _receive_upload(
    request: Request[Any, Any, Any], engine: Engine, patient: Principal
) -> RecordInfo:
    limit = engine.settings.record_max_bytes + FORM_OVERHEAD
    fields: dict[str, str] = {}
    upload: PendingUpload | None = None
    filename: str | None = None
    current: str | None = None
    text = bytearray()
    complete = False
    try:
        async for event in form_events(request, limit, _too_large):
            if isinstance(event, PartStart):
                current = event.name
                if current == "file":
                    if upload is not None:
                        raise Invalid("send exactly one file", code="duplicate_field", field="file")
                    check_upload_fields(
                        fields.get("kind"), fields.get("group"), fields.get("title")
                    )
                    filename = event.filename
                    upload = engine.records.begin_upload(patient)
                elif current in _TEXT_FIELDS:
                    if current in fields:
                        raise Invalid(
                            f"{current} given twice", code="duplicate_field", field=current
                        )
                    text.clear()
                else:
                    raise Invalid(
                        "unknown multipart field (expected file, kind, group, title)",
                        code="unknown_field",
                    )
            elif isinstance(event, PartData):
                if current == "file":
                    assert upload is not None
                    await upload.write(event.data)
                else:
                    text.extend(event.data)
                    if len(text) > FIELD_MAX:
                        raise Invalid(
                            f"{current} is too long", code="field_too_long", field=current
                        )
            elif isinstance(event, PartEnd):
                if current in _TEXT_FIELDS:
                    try:
                        fields[current] = text.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Invalid(
                            f"{current} must be UTF-8", code="invalid_input", field=current
                        ) from None
                current = None
            else:
                complete = True
        if not complete:
            raise malformed("the multipart body ended early")
        if upload is None:
            raise Invalid("the file part is missing", code="file_missing", field="file")
        return await upload.finish(
            kind=fields.get("kind"),
            group=fields.get("group"),
            title=fields.get("title"),
            filename=filename,
        )
    finally:
        if upload is not None:
            await upload.abort()


# -- responses ----------------------------------------------------------------------------------


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266/5987)."""
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;' else "_" for ch in filename
    )
    quoted = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


def _download(content: RecordContent) -> Stream:
    info = content.info
    return Stream(
        content.chunks(),
        # Litestar adds the charset of text types itself; the stored type carries one too.
        media_type=info.content_type.split(";", 1)[0],
        headers={
            "Content-Length": str(info.size),
            # Cleaned again: records stored before names took their detected type's extension.
            "Content-Disposition": content_disposition(
                clean_filename(info.filename, info.content_type)
            ),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",
        },
        background=BackgroundTask(content.close),
    )


_BYTES = {
    200: ResponseSpec(
        data_container=bytes,
        media_type="application/octet-stream",
        description="The record's bytes (Content-Type as recognised at upload), as an "
        "attachment. Verified in full before the first byte is sent.",
    )
}


@dataclass
class _UploadOperation(Operation):
    """The upload's request body, which Litestar cannot infer from a streamed handler."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["file", "kind"],
                        properties={
                            "file": Schema(
                                type=OpenAPIType.STRING,
                                content_media_type="application/octet-stream",
                            ),
                            "kind": Schema(
                                type=OpenAPIType.STRING,
                                enum=list(KINDS),
                            ),
                            "group": text,
                            "title": text,
                        },
                    )
                )
            },
        )


# -- patient: records -------------------------------------------------------------------------


@post(
    "/v1/me/records",
    tags=_TAGS,
    summary="Upload a record (multipart)",
    status_code=HTTP_201_CREATED,
    request_max_body_size=None,
    operation_class=_UploadOperation,
    responses=problems(401, 403, 413, 415, 422, 503),
)
async def upload_record(
    request: Request[Any, Any, Any], engine: Engine, patient: Principal
) -> Response[RecordInfo]:
    """multipart/form-data: `file`, `kind` (exam | report | prescription | vaccination |
    image | other), `group?` (a label such as
    `cardiology-2026`: a-z, 0-9, `.`, `_`, `-`, stored lowercased), `title?` (at most 200
    characters). The type is recognised by content (PDF, PNG, JPEG, DICOM, UTF-8 text;
    executables, archives and markup → 415 whatever the name or declared type); empty → 422
    `empty_file`; over `HEALTHMED_RECORD_MAX_BYTES` → 413 `record_too_large`. The file name is
    metadata only (path components and control characters removed, at most 255 characters).
    Stored encrypted (AES-256-GCM, a fresh key per record)."""
    info = await _receive_upload(request, engine, patient)
    log_event("record.uploaded", record_id=info.id, kind=info.kind, size=info.size)
    return Response(
        info, status_code=HTTP_201_CREATED, headers={"Location": f"/v1/me/records/{info.id}"}
    )


@get(
    "/v1/me/records",
    tags=_TAGS,
    summary="List own records",
    responses=problems(401, 403, 422),
)
async def list_records(
    engine: Engine,
    patient: Principal,
    kind: str | None = Parameter(
        default=None,
        description="one of " + ", ".join(KINDS) + " (422 `invalid_kind`)",
        schema_extra={"pattern": KIND_PATTERN},
    ),
    group: str | None = Parameter(
        default=None,
        description="a group label, case-insensitive (422 `invalid_group`)",
        schema_extra={"pattern": GROUP_PATTERN},
    ),
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> RecordPage:
    """Newest first, filtered by `kind` and `group` (422 for an unknown kind or a bad label)."""
    return await engine.records.list_records(
        patient, kind=kind, group=group, limit=limit, cursor=cursor
    )


@get(
    "/v1/me/records/access-log",
    tags=_TAGS,
    summary="Who read my records",
    responses=problems(401, 403, 422),
)
async def access_log(
    engine: Engine, patient: Principal, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> AccessPage:
    """Every read by a doctor, newest first: `{record_id, doctor_id, action: list|download,
    at}`. A listing writes one `list` entry per record shown."""
    return await engine.records.access_log(patient, limit=limit, cursor=cursor)


@get(
    "/v1/me/records/{record_id:str}",
    tags=_TAGS,
    summary="One record's metadata",
    responses=problems(401, 403, 404),
)
async def get_record(engine: Engine, patient: Principal, record_id: str) -> RecordInfo:
    """404 `record_not_found` for unknown ids and for other patients' records alike."""
    return await engine.records.get_record(patient, record_id)


@get(
    "/v1/me/records/{record_id:str}/content",
    tags=_TAGS,
    summary="Download own record",
    responses={**_BYTES, **problems(401, 403, 404, 500, 503)},
)
async def own_record_content(engine: Engine, patient: Principal, record_id: str) -> Stream:
    """The bytes as an attachment. A stored blob that fails its integrity check (tampered,
    truncated, missing) → 500 `record_integrity_error`, and nothing of it is sent."""
    return _download(await engine.records.open_content(patient, record_id))


@delete(
    "/v1/me/records/{record_id:str}",
    tags=_TAGS,
    summary="Delete own record",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 503),
)
async def delete_record(engine: Engine, patient: Principal, record_id: str) -> None:
    """Deletes the record (its key first, then its blob) and removes it from every share."""
    await engine.records.delete_record(patient, record_id)


# -- patient: shares --------------------------------------------------------------------------


@post(
    "/v1/me/shares",
    tags=_TAGS,
    summary="Share records with a doctor",
    status_code=HTTP_201_CREATED,
    responses=problems(401, 403, 413, 422),
)
async def create_share(engine: Engine, patient: Principal, data: ShareCreate) -> ShareInfo:
    """422: `unknown_doctor` (no doctor has this id), `unknown_record` (a record id that is not
    one of yours: the same answer whether it does not exist or is someone else's),
    `empty_share` (neither record_ids nor groups), `invalid_expiry` (past, or more than 365
    days ahead), `invalid_group`. A group share also covers records added to the group later."""
    share = await engine.records.create_share(
        patient,
        doctor_id=data.doctor_id,
        record_ids=data.record_ids,
        groups=data.groups,
        expires_at=data.expires_at,
    )
    log_event("share.created", share_id=share.id, doctor_id=share.doctor_id)
    return share


@get(
    "/v1/me/shares",
    tags=_TAGS,
    summary="List own shares",
    responses=problems(401, 403, 422),
)
async def list_shares(
    engine: Engine,
    patient: Principal,
    active: bool | None = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> SharePage:
    """Newest first; each share has `active` (not revoked and not expired). `?active=true` or
    `false` filters on it."""
    return await engine.records.list_shares(patient, active=active, limit=limit, cursor=cursor)


@delete(
    "/v1/me/shares/{share_id:str}",
    tags=_TAGS,
    summary="Revoke a share",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404),
)
async def revoke_share(engine: Engine, patient: Principal, share_id: str) -> None:
    """Effective at once. Revoking an already revoked share is a no-op (204); another
    patient's share → 404."""
    await engine.records.revoke_share(patient, share_id)


# -- doctor access ----------------------------------------------------------------------------


@get(
    "/v1/patients/{patient_id:str}/records",
    tags=_TAGS,
    summary="A patient's records shared with me",
    responses=problems(401, 403, 404, 422),
)
async def shared_records(
    engine: Engine,
    doctor: Principal,
    patient_id: str,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> RecordPage:
    """Records an active share (not revoked, not expired, by record or by group) covers at
    the moment of the request. No active share from this patient → 404 (the same answer as
    for a patient that does not exist). Written to the patient's access log."""
    return await engine.records.doctor_records(doctor, patient_id, limit=limit, cursor=cursor)


@get(
    "/v1/patients/{patient_id:str}/records/{record_id:str}/content",
    tags=_TAGS,
    summary="Download a record shared with me",
    responses={**_BYTES, **problems(401, 403, 404, 500, 503)},
)
async def shared_record_content(
    engine: Engine, doctor: Principal, patient_id: str, record_id: str
) -> Stream:
    """The bytes while an active share covers the record; otherwise 404 with the same body
    as for a record that does not exist. The read is written to the patient's access log
    before the first byte is sent."""
    return _download(await engine.records.doctor_content(doctor, patient_id, record_id))


route_handlers = [
    upload_record,
    list_records,
    access_log,
    get_record,
    own_record_content,
    delete_record,
    create_share,
    list_shares,
    revoke_share,
    shared_records,
    shared_record_content,
]

for _handler in route_handlers:  # OpenAPI descriptions come from the docstrings above
    if _handler.description is None and _handler.fn.__doc__:
        _handler.description = inspect.cleandoc(_handler.fn.__doc__)
