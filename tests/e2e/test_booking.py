"""Booking end to end through the real server process on its own real redis-server: the
200-patient race for one slot, 50 concurrent overlapping slot creations, every bad input of
docs/API.md's availability and appointment tables, Idempotency-Key replay, and a Redis flush
between requests."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e._accounts import bearer, login_doctor, patient_session, register_doctor
from tests.support import ServerProcess, timeout

REDIS_BACKENDS = ("redis", "cluster")
"""Every test here runs on a redis-server and on a real Redis Cluster (tests/e2e/conftest.py)."""


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def later(hours: float = 0, minutes: float = 0, days: float = 0) -> datetime:
    base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=2)
    return base + timedelta(days=days, hours=hours, minutes=minutes)


def forge(server: ServerProcess, sub: str, role: str) -> dict[str, str]:
    """A valid access token signed with the server's own secret (same claims as
    engine/accounts/tokens.py): what a login would return, minus the Argon2 cost."""
    secret = (server.data_dir / "secrets" / "jwt_secret").read_text().strip()
    now = int(time.time())
    claims = {
        "iss": "healthmed", "aud": "healthmed-api", "sub": sub, "role": role,
        "iat": now, "exp": now + 900, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def new_doctor(http: httpx.Client, unique: Callable[[], int]) -> tuple[str, dict[str, str]]:
    profile = register_doctor(http, unique())
    return profile["id"], bearer(login_doctor(http, profile))


def make_slots(
    http: httpx.Client, headers: dict[str, str], spans: list[tuple[datetime, datetime]]
) -> list[str]:
    r = http.post(
        "/v1/me/slots",
        headers=headers,
        json={"slots": [{"start": iso(s), "end": iso(e)} for s, e in spans]},
    )
    assert r.status_code == 201, r.text
    return [item["id"] for item in r.json()["items"]]


def own_slots(
    http: httpx.Client, doc: dict[str, str], params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every page of ``GET /v1/me/slots`` (100 a page)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**(params or {}), "limit": 100, **({"cursor": cursor} if cursor else {})}
        r = http.get("/v1/me/slots", headers=doc, params=query)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def problem(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code is not None:
        assert r.json()["code"] == code, r.text


def test_two_hundred_patients_race_for_one_slot(
    server: ServerProcess, http: httpx.Client, unique: Callable[[], int]
) -> None:
    """200 distinct patients POST the same slot at once: exactly one 201, 199 x 409
    slot_unavailable, no 5xx. Patients use tokens forged with the server's JWT secret (same
    claims as a login) to skip 200 Argon2 registrations; booking needs no profile."""
    doctor_id, doc = new_doctor(http, unique)
    (slot,) = make_slots(http, doc, [(later(1), later(2))])
    patients = [forge(server, f"P{uuid.uuid4().hex}", "patient") for _ in range(200)]

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=timeout(60), limits=limits
        ) as client:
            start = asyncio.Event()

            async def one(headers: dict[str, str]) -> httpx.Response:
                await start.wait()
                return await client.post(
                    "/v1/appointments", headers=headers, json={"slot_id": slot}
                )

            tasks = [asyncio.create_task(one(h)) for h in patients]
            await asyncio.sleep(0.2)
            start.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(race())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 199, statuses
    assert all(r.json()["code"] == "slot_unavailable" for r in responses if r.status_code == 409)
    agenda = http.get(f"/v1/doctors/{doctor_id}/slots", headers=patients[0]).json()
    assert [s["status"] for s in agenda["slots"]] == ["taken"]


def test_fifty_concurrent_overlapping_slot_creations_store_no_overlap(
    server: ServerProcess,
    http: httpx.Client,
    flush_redis: Callable[[], None],
    unique: Callable[[], int],
) -> None:
    """50 concurrent POST /v1/me/slots of one doctor with overlapping batches: each is 201 or
    409 slot_overlap, and the stored slots (listed after a Redis flush, so rebuilt from the
    store) never overlap."""
    _, doc = new_doctor(http, unique)
    bodies = []
    for i in range(50):
        base = later(days=3, minutes=(i % 10) * 20)
        bodies.append(
            {
                "slots": [
                    {
                        "start": iso(base + timedelta(hours=4 * k)),
                        "end": iso(base + timedelta(hours=4 * k, minutes=50)),
                    }
                    for k in range(3)
                ]
            }
        )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout(60)) as client:
            return await asyncio.gather(
                *(client.post("/v1/me/slots", headers=doc, json=b) for b in bodies)
            )

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} <= {201, 409}
    created = sum(len(r.json()["items"]) for r in responses if r.status_code == 201)
    assert all(r.json()["code"] == "slot_overlap" for r in responses if r.status_code == 409)
    flush_redis()
    items = own_slots(http, doc, {"to": iso(later(days=10))})
    assert len(items) == created > 0
    spans = sorted((i["start"], i["end"]) for i in items)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start


@pytest.fixture
def booked(server: ServerProcess, http: httpx.Client, unique: Callable[[], int]) -> dict[str, Any]:
    """A doctor with three slots, a patient with a requested appointment on the first."""
    doctor_id, doc = new_doctor(http, unique)
    slots = make_slots(
        http, doc, [(later(1), later(2)), (later(3), later(4)), (later(5), later(6))]
    )
    pat = patient_session(http, unique())
    r = http.post("/v1/appointments", headers=pat, json={"slot_id": slots[0]})
    assert r.status_code == 201, r.text
    return {"doctor_id": doctor_id, "doc": doc, "pat": pat, "slots": slots, "appt": r.json()}


@pytest.mark.parametrize(
    ("spans", "code"),
    [
        pytest.param([(later(days=-3), later(days=-3, hours=1))], "slot_in_past", id="past"),
        pytest.param([(later(1), later(1))], "invalid_slot", id="zero-length"),
        pytest.param([(later(1), later(5, minutes=1))], "slot_too_long", id="over-4h"),
        pytest.param(
            [(later(1 + i), later(1 + i, minutes=30)) for i in range(501)],
            "too_many_slots",
            id="over-500",
        ),
    ],
)
def test_invalid_slots_are_422(
    http: httpx.Client, unique: Callable[[], int], spans: list[tuple[datetime, datetime]], code: str
) -> None:
    """Past, zero-length, over 4 h, over 500 slots: 422 with its code, nothing created."""
    _, doc = new_doctor(http, unique)
    body = {"slots": [{"start": iso(s), "end": iso(e)} for s, e in spans]}
    problem(http.post("/v1/me/slots", headers=doc, json=body), 422, code)
    assert http.get("/v1/me/slots", headers=doc).json()["items"] == []


def test_slot_bodies_and_queries_are_validated(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Unknown fields, both/neither of slots and rule, a bad timezone, an agenda over 62 days:
    422; a rule makes DST-safe slots; an overlap is 409 slot_overlap with nothing created."""
    doctor_id, doc = new_doctor(http, unique)
    problem(http.post("/v1/me/slots", headers=doc, json={"slots": [], "extra": 1}), 422)
    problem(http.post("/v1/me/slots", headers=doc, json={}), 422)
    rule = {
        "from": later(days=1).date().isoformat(),
        "to": later(days=7).date().isoformat(),
        "weekdays": [1, 2, 3, 4, 5],
        "start_time": "08:00",
        "end_time": "12:00",
        "timezone": "America/Sao_Paulo",
    }
    problem(
        http.post("/v1/me/slots", headers=doc, json={"rule": {**rule, "timezone": "Nowhere/City"}}),
        422,
        "invalid_timezone",
    )
    r = http.post("/v1/me/slots", headers=doc, json={"rule": rule})
    assert r.status_code == 201, r.text
    first = r.json()["items"][0]
    assert first["start"].endswith("T11:00:00Z")
    overlap = {
        "slots": [
            {"start": first["start"], "end": first["end"]},
            {"start": iso(later(days=40)), "end": iso(later(days=40, hours=1))},
        ]
    }
    problem(http.post("/v1/me/slots", headers=doc, json=overlap), 409, "slot_overlap")
    agenda_range = {"from": iso(later()), "to": iso(later(days=63))}
    problem(http.get(f"/v1/doctors/{doctor_id}/slots", headers=doc, params=agenda_range), 422)
    listed = own_slots(http, doc, {"to": iso(later(days=60))})
    assert len(listed) == len(r.json()["items"])


def test_the_own_agenda_comes_in_pages(http: httpx.Client, unique: Callable[[], int]) -> None:
    """45 slots: GET /v1/me/slots answers 20 by default with a next_cursor, pages follow in
    start order without repeats; limit 1-100 and a garbled cursor are 422; the OpenAPI
    document lists limit and cursor."""
    _, doc = new_doctor(http, unique)
    base = later(days=2)
    spans = [
        {"start": iso(base + timedelta(hours=i)), "end": iso(base + timedelta(hours=i, minutes=50))}
        for i in range(45)
    ]
    r = http.post("/v1/me/slots", headers=doc, json={"slots": spans})
    assert r.status_code == 201, r.text
    first = http.get("/v1/me/slots", headers=doc).json()
    assert len(first["items"]) == 20
    assert first["next_cursor"]
    second = http.get(
        "/v1/me/slots", headers=doc, params={"cursor": first["next_cursor"], "limit": 25}
    ).json()
    assert [len(second["items"]), second["next_cursor"]] == [25, None]
    starts = [s["start"] for s in first["items"] + second["items"]]
    assert starts == [s["start"] for s in spans]
    for bad in ({"limit": 0}, {"limit": 101}, {"cursor": "garbled!"}):
        problem(http.get("/v1/me/slots", headers=doc, params=bad), 422)
    schema = http.get("/schema/openapi.json").json()
    names = {p["name"] for p in schema["paths"]["/v1/me/slots"]["get"]["parameters"]}
    assert {"limit", "cursor"} <= names


def test_wrong_roles_and_other_users_appointments(
    server: ServerProcess, http: httpx.Client, unique: Callable[[], int], booked: dict[str, Any]
) -> None:
    """A doctor booking: 403; a patient accepting: 403; another doctor accepting: 404;
    another patient reading or cancelling: 404; no token: 401."""
    appt = booked["appt"]["id"]
    problem(
        http.post("/v1/appointments", headers=booked["doc"], json={"slot_id": booked["slots"][1]}),
        403,
    )
    problem(http.post(f"/v1/appointments/{appt}/accept", headers=booked["pat"]), 403)
    _, other_doc = new_doctor(http, unique)
    problem(http.post(f"/v1/appointments/{appt}/accept", headers=other_doc), 404)
    other = forge(server, f"P{uuid.uuid4().hex}", "patient")
    problem(http.get(f"/v1/appointments/{appt}", headers=other), 404)
    problem(
        http.post(
            f"/v1/appointments/{appt}/cancel",
            headers=other,
            json={"justification": "not mine at all"},
        ),
        404,
    )
    problem(http.get(f"/v1/appointments/{appt}/meeting", headers=other), 404)
    problem(http.post("/v1/appointments", json={"slot_id": booked["slots"][1]}), 401)


def test_transitions_justification_rating_and_meeting(
    http: httpx.Client, booked: dict[str, Any]
) -> None:
    """Meeting before confirmation: 409; accept → confirmed with a 50-minute meeting; a second
    accept or a refuse: 409 invalid_transition; a missing or short justification: 422; rating
    before the end: 409 rating_too_early; stars out of range: 422; cancel reopens the slot."""
    doc, pat, appt = booked["doc"], booked["pat"], booked["appt"]["id"]
    problem(http.get(f"/v1/appointments/{appt}/meeting", headers=pat), 409)
    r = http.post(f"/v1/appointments/{appt}/accept", headers=doc)
    assert r.status_code == 200, r.text
    meeting = r.json()["meeting"]
    starts = datetime.fromisoformat(meeting["starts_at"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(meeting["ends_at"].replace("Z", "+00:00"))
    assert ends - starts == timedelta(minutes=50)
    assert http.get(f"/v1/appointments/{appt}/meeting", headers=pat).json()["url"] != meeting["url"]
    problem(http.post(f"/v1/appointments/{appt}/accept", headers=doc), 409, "invalid_transition")
    problem(
        http.post(f"/v1/appointments/{appt}/refuse", headers=doc, json={"reason": "no"}),
        409,
        "invalid_transition",
    )
    problem(http.post(f"/v1/appointments/{appt}/cancel", headers=pat, json={}), 422)
    problem(
        http.post(f"/v1/appointments/{appt}/cancel", headers=pat, json={"justification": "short"}),
        422,
    )
    problem(
        http.post(
            f"/v1/appointments/{appt}/cancel", headers=pat, json={"justification": "x" * 1001}
        ),
        422,
    )
    problem(
        http.post(f"/v1/appointments/{appt}/rating", headers=pat, json={"stars": 5}),
        409,
        "rating_too_early",
    )
    problem(http.post(f"/v1/appointments/{appt}/rating", headers=pat, json={"stars": 6}), 422)
    r = http.post(
        f"/v1/appointments/{appt}/cancel",
        headers=pat,
        json={"justification": "I cannot make it anymore"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["cancellation"]["by"] == "patient"
    problem(
        http.post(
            f"/v1/appointments/{appt}/cancel",
            headers=pat,
            json={"justification": "I cannot make it anymore"},
        ),
        409,
        "invalid_transition",
    )
    agenda = http.get(f"/v1/doctors/{booked['doctor_id']}/slots", headers=pat).json()
    assert agenda["price"] == {"amount_cents": 25_000, "currency": "BRL"}
    assert [s["status"] for s in agenda["slots"]] == ["open", "open", "open"]


def test_slot_conflicts_and_patient_overlap(
    http: httpx.Client, unique: Callable[[], int], booked: dict[str, Any]
) -> None:
    """Booking a taken slot: 409 slot_unavailable; an overlapping slot of another doctor: 409
    patient_overlap; editing or deleting a requested slot: 409 slot_not_open."""
    doc, pat, slots = booked["doc"], booked["pat"], booked["slots"]
    problem(
        http.post(
            "/v1/appointments", headers=patient_session(http, unique()), json={"slot_id": slots[0]}
        ),
        409,
        "slot_unavailable",
    )
    _, other_doc = new_doctor(http, unique)
    (overlapping,) = make_slots(http, other_doc, [(later(1, 30), later(2, 30))])
    problem(
        http.post("/v1/appointments", headers=pat, json={"slot_id": overlapping}),
        409,
        "patient_overlap",
    )
    problem(
        http.patch(
            f"/v1/me/slots/{slots[0]}",
            headers=doc,
            json={"start": iso(later(20)), "end": iso(later(21))},
        ),
        409,
        "slot_not_open",
    )
    problem(http.delete(f"/v1/me/slots/{slots[0]}", headers=doc), 409, "slot_not_open")
    problem(
        http.patch(
            f"/v1/me/slots/{slots[1]}",
            headers=doc,
            json={"start": iso(later(5, 30)), "end": iso(later(6, 30))},
        ),
        409,
        "slot_overlap",
    )
    assert http.delete(f"/v1/me/slots/{slots[2]}", headers=doc).status_code == 204
    problem(http.delete(f"/v1/me/slots/{slots[2]}", headers=doc), 404)
    problem(http.post("/v1/appointments", headers=pat, json={"slot_id": "nonsense"}), 404)


def test_idempotency_key_replays_the_first_response(
    http: httpx.Client, unique: Callable[[], int], booked: dict[str, Any]
) -> None:
    """The same Idempotency-Key from the same patient returns the first response (status and
    body), for a 201 and for a 409; another patient's key is independent."""
    slot = booked["slots"][1]
    pat = patient_session(http, unique())
    first = http.post(
        "/v1/appointments", headers={**pat, "Idempotency-Key": "abc"}, json={"slot_id": slot}
    )
    again = http.post(
        "/v1/appointments", headers={**pat, "Idempotency-Key": "abc"}, json={"slot_id": slot}
    )
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    other = patient_session(http, unique())
    lost = http.post(
        "/v1/appointments", headers={**other, "Idempotency-Key": "abc"}, json={"slot_id": slot}
    )
    replay = http.post(
        "/v1/appointments", headers={**other, "Idempotency-Key": "abc"}, json={"slot_id": slot}
    )
    problem(lost, 409, "slot_unavailable")
    assert (replay.status_code, replay.content) == (lost.status_code, lost.content)
    mine = http.get("/v1/appointments", headers=pat).json()
    assert [a["id"] for a in mine["items"]] == [first.json()["id"]]
    assert mine["next_cursor"] is None
    elsewhere = http.post(
        "/v1/appointments",
        headers={**pat, "Idempotency-Key": "abc"},
        json={"slot_id": booked["slots"][2]},
    )
    problem(elsewhere, 422, "idempotency_key_reused")
    assert len(http.get("/v1/appointments", headers=pat).json()["items"]) == 1


def test_flushed_redis_between_requests_loses_nothing(
    http: httpx.Client,
    flush_redis: Callable[[], None],
    unique: Callable[[], int],
    booked: dict[str, Any],
) -> None:
    """FLUSHALL between requests: the confirmed appointment and its taken slot survive, it
    cannot be booked again, and the open slots are still bookable."""
    doc, pat, appt = booked["doc"], booked["pat"], booked["appt"]["id"]
    assert http.post(f"/v1/appointments/{appt}/accept", headers=doc).status_code == 200
    flush_redis()
    problem(
        http.post(
            "/v1/appointments",
            headers=patient_session(http, unique()),
            json={"slot_id": booked["slots"][0]},
        ),
        409,
        "slot_unavailable",
    )
    assert http.get(f"/v1/appointments/{appt}", headers=pat).json()["status"] == "confirmed"
    agenda = http.get(f"/v1/doctors/{booked['doctor_id']}/slots", headers=pat).json()
    assert [s["status"] for s in agenda["slots"]] == ["taken", "open", "open"]
    r = http.post(
        "/v1/appointments",
        headers=patient_session(http, unique()),
        json={"slot_id": booked["slots"][1]},
    )
    assert r.status_code == 201, r.text
