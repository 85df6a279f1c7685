"""Stored and public shapes of records, shares and access-log entries, and their validators.

Store layout (single table, one partition per patient, so erasure and export read one
partition and a doctor's access is decided by the patient's own items)::

    pk              sk                          what
    USER#<patient>  REC#<record id>             record metadata + wrapped data key + blob id
    USER#<patient>  SHARE#<share id>            a share (kept after revocation, with revoked_at)
    USER#<patient>  ACCESS#<ms:013d>#<ulid>     one doctor read (list or download)

Ids are ULIDs, so ``REC#`` and ``SHARE#`` sort by creation time and ``ACCESS#`` by time.
Validators never echo the value back (file names and titles may be personal data).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

from engine.errors import Checks, Invalid
from engine.records._sealed import open_with, seal_with
from engine.store.keys import access_sk as access_sk
from engine.store.keys import record_sk as record_sk
from engine.store.keys import share_sk as share_sk
from engine.store.keys import user_pk
from engine.timeutil import to_rfc3339

Kind = Literal["exam", "report", "prescription", "vaccination", "image", "other"]
KINDS: tuple[str, ...] = ("exam", "report", "prescription", "vaccination", "image", "other")
Action = Literal["list", "download"]

GROUP_MAX = 64
TITLE_MAX = 200
FILENAME_MAX = 255
SHARE_MAX_DAYS = 365
SHARE_MAX_RECORDS = 50
SHARE_MAX_GROUPS = 20

_GROUP = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
GROUP_PATTERN = r"^\s*([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?\s*$"
"""The OpenAPI pattern of a group label as given: trimmed, any case, empty for none."""
KIND_PATTERN = "^(" + "|".join(KINDS) + ")?$"
"""The OpenAPI pattern of a kind filter (empty for none)."""
_ID = re.compile(r"[0-9A-Za-z]{1,64}")

record_pk = user_pk
"""A patient's records, shares and access log live in the patient's own partition."""

_EXTENSIONS = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "application/dicom": "dcm",
    "text/plain; charset=utf-8": "txt",
}


def is_id(value: str) -> bool:
    """Ids we issue are ULIDs; anything else cannot name an item (→ ``NotFound``, never a
    lookup)."""
    return _ID.fullmatch(value) is not None


class RecordInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A record's metadata as patients and doctors see it."""

    id: str
    kind: str
    group: str | None
    title: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: str


class SealedNames(msgspec.Struct, frozen=True, kw_only=True):
    """A record's title and file name, sealed with the record's own data key (they can say
    "HIV+ result"): AES-256-GCM, base64url, context naming the record and its patient."""

    nonce: str
    ciphertext: str


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A record as stored: public metadata plus where and how its bytes are kept. Stored with
    ``title=None``, ``filename=""`` and both in ``names`` (:func:`seal_names`); records stored
    before that keep them in the clear and ``names=None``."""

    id: str
    patient_id: str
    kind: str
    group: str | None
    title: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: int
    blob_id: str
    key_provider: str
    wrapped_key: bytes
    names: SealedNames | None = None

    def info(self) -> RecordInfo:
        return RecordInfo(
            id=self.id,
            kind=self.kind,
            group=self.group,
            title=self.title,
            filename=self.filename,
            content_type=self.content_type,
            size=self.size,
            sha256=self.sha256,
            uploaded_at=to_rfc3339(self.uploaded_at),
        )


class ShareInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    doctor_id: str
    record_ids: list[str]
    groups: list[str]
    expires_at: str
    created_at: str
    revoked_at: str | None
    active: bool


class Share(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    patient_id: str
    doctor_id: str
    record_ids: list[str]
    groups: list[str]
    expires_at: int
    created_at: int
    revoked_at: int | None = None

    def active_at(self, now: int) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def covers(self, record: Record) -> bool:
        return record.id in self.record_ids or (
            record.group is not None and record.group in self.groups
        )

    def info(self, now: int) -> ShareInfo:
        return ShareInfo(
            id=self.id,
            doctor_id=self.doctor_id,
            record_ids=list(self.record_ids),
            groups=list(self.groups),
            expires_at=to_rfc3339(self.expires_at),
            created_at=to_rfc3339(self.created_at),
            revoked_at=None if self.revoked_at is None else to_rfc3339(self.revoked_at),
            active=self.active_at(now),
        )


class AccessEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One read of a record by a doctor, as the patient sees it."""

    record_id: str
    doctor_id: str
    action: Action
    at: str
    doctor_name: str | None = None
    """The doctor's current name; ``null`` once that doctor's account is erased."""


class RecordPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RecordInfo]
    next_cursor: str | None


class SharePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ShareInfo]
    next_cursor: str | None


class AccessPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AccessEntry]
    next_cursor: str | None


def check_kind(kind: str | None, *, required: bool = True) -> str | None:
    if kind is None or kind == "":
        if required:
            raise Invalid("kind is required", code="invalid_kind", field="kind")
        return None
    if kind not in KINDS:
        raise Invalid("kind must be one of " + ", ".join(KINDS), code="invalid_kind", field="kind")
    return kind


def check_group(group: str | None, *, field: str = "group") -> str | None:
    """A group label: 1-64 of ``a-z 0-9 . _ -``, starting and ending with a letter or digit.

    Labels are case-insensitive and stored lowercased. Empty means no group.
    """
    if group is None:
        return None
    value = group.strip()
    if not value:
        return None
    # ASCII before lowercasing: the Kelvin sign "\u212a" lowercases to "k"
    if (
        len(value) > GROUP_MAX
        or not value.isascii()
        or not _GROUP.fullmatch(value := value.lower())
    ):
        raise Invalid(
            f"{field} must be 1-{GROUP_MAX} characters of a-z, 0-9, '.', '_' and '-', "
            "starting and ending with a letter or digit",
            code="invalid_group",
            field=field,
        )
    return value


def check_upload_fields(kind: str | None, group: str | None, title: str | None) -> None:
    """Validate an upload's text fields before its bytes arrive (``kind`` may come later);
    every invalid one is reported."""
    checks = Checks()
    if kind is not None:
        checks.run("kind", lambda: check_kind(kind))
    checks.run("group", lambda: check_group(group))
    checks.run("title", lambda: check_title(title))
    checks.done()


def _printable(value: str) -> str:
    """NFC, with control, format (bidi overrides, zero-width) and unassigned characters removed
    and whitespace runs collapsed."""
    value = unicodedata.normalize("NFC", value)
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in value
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return " ".join(kept.split())


def check_title(title: str | None) -> str | None:
    if title is None:
        return None
    value = _printable(title)
    if not value:
        return None
    if len(value) > TITLE_MAX:
        raise Invalid(
            f"title must be at most {TITLE_MAX} characters", code="invalid_title", field="title"
        )
    return value


def clean_filename(raw: str | None, content_type: str) -> str:
    """The client's file name reduced to safe metadata: last path component only (``/`` and
    ``\\``), printable characters, no leading dots, at most 255 characters, and the extension
    of the *detected* type in place of the client's (``laudo.bat`` that is text is
    ``laudo.txt``; ``exame.pdf.js`` is ``exame.pdf.txt``): the name a doctor's browser saves
    never makes the file something it is not. Never used as a path. A name with nothing left
    becomes ``record.<ext>``. Idempotent, so it is applied again when a record is served."""
    ext = _EXTENSIONS.get(content_type, "bin")
    value = _printable(raw or "")
    value = re.split(r"[\\/]", value)[-1].strip().lstrip(".").strip()
    stem, dot, old_ext = value.rpartition(".")
    if dot and stem and 0 < len(old_ext) <= 16 and " " not in old_ext:
        value = stem.rstrip()
    value = value[: FILENAME_MAX - len(ext) - 1].rstrip().rstrip(".")
    return f"{value or 'record'}.{ext}"


def _names_context(record: Record) -> dict[str, str]:
    return {"purpose": "names", "patient_id": record.patient_id, "record_id": record.id}


def seal_names(record: Record, key: bytes) -> Record:
    """The stored form of ``record``: title and file name sealed with its data key."""
    plain = msgspec.json.encode({"title": record.title, "filename": record.filename})
    nonce, ciphertext = seal_with(key, plain, _names_context(record))
    return msgspec.structs.replace(
        record, title=None, filename="", names=SealedNames(nonce=nonce, ciphertext=ciphertext)
    )


def open_names(record: Record, key: bytes) -> Record:
    """``record`` with its title and file name back in the clear (``IntegrityError`` if the
    sealed names are not this record's)."""
    if record.names is None:
        return record
    plain = open_with(key, record.names.nonce, record.names.ciphertext, _names_context(record))
    names = msgspec.json.decode(plain)
    return msgspec.structs.replace(
        record, title=names["title"], filename=str(names["filename"]), names=None
    )
