"""The waitlist end to end through the real server process: entries and their bad input, the
three-patient hand-over over HTTP and websockets (offer, decline, lapse, booking by the
holder), the 200-patient race for a freed slot with and without a waitlist, and a Redis flush
during a hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e._accounts import bearer, login_patient, register_patient
from tests.e2e.test_booking import forge, iso, later, make_slots, new_doctor, problem
from tests.e2e.test_rescheduling import Listener, post, wait_kind
from tests.mail_sink import MailSink
from tests.support import RedisServer, ServerProcess, free_port, timeout

HOLD_SECONDS = round(timeout(4))
"""Short enough to watch a hold lapse, scaled (HEALTHMED_TEST_TIMEOUT_FACTOR) so that a loaded
machine does not lapse one before the test declines it."""


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wl_server(
    module_redis: RedisServer, sink: MailSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose holds last HOLD_SECONDS, so a lapse can be watched."""
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("waitlist")),
        env={
            "HEALTHMED_REDIS_URL": module_redis.url,
            "HEALTHMED_ENV": "test",
            "HEALTHMED_WAITLIST_HOLD_SECONDS": str(HOLD_SECONDS),
            "HEALTHMED_MAIL_URL": sink.url,
            "HEALTHMED_MAIL_POLL_SECONDS": "0.2",
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def long_redis() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def long_server(
    long_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server (on a Redis of its own) with the default 10-minute holds: the races and the
    flush must not see a hold lapse, however loaded the machine."""
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("waitlist-long")),
        env={"HEALTHMED_REDIS_URL": long_redis.url, "HEALTHMED_ENV": "test"},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def long(long_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=long_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def wl(wl_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=wl_server.url, timeout=30) as client:
        yield client


def patient(server: ServerProcess, n: int) -> tuple[str, dict[str, str]]:
    sub = f"P{n:012d}"
    return sub, forge(server, sub, "patient")


def wait(http: httpx.Client, headers: dict[str, str], doctor_id: str, start: datetime,
         end: datetime) -> httpx.Response:  # fmt: skip
    return http.post(
        "/v1/waitlist", headers=headers,
        json={"doctor_id": doctor_id, "from": iso(start), "to": iso(end)},
    )  # fmt: skip


def test_an_entry_is_listed_with_its_position_and_no_offer(
    wl_server: ServerProcess, wl: httpx.Client, unique: Callable[[], int]
) -> None:
    """Three patients wait for one doctor: positions 1, 2, 3 in creation order, in the
    patients' lists and in the doctor's; deleting the first moves the others up."""
    doctor_id, doc = new_doctor(wl, unique)
    patients = [patient(wl_server, unique()) for _ in range(3)]
    ids = []
    for i, (_, headers) in enumerate(patients):
        r = wait(wl, headers, doctor_id, later(0), later(days=5))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["position"] == i + 1
        assert body["offer"] is None
        assert body["doctor_id"] == doctor_id
        ids.append(body["id"])
    mine = wl.get("/v1/waitlist", headers=patients[2][1]).json()["items"]
    assert [(e["id"], e["position"]) for e in mine] == [(ids[2], 3)]
    listed = wl.get("/v1/me/waitlist", headers=doc).json()
    assert [(e["id"], e["patient_id"], e["position"]) for e in listed["items"]] == [
        (ids[i], patients[i][0], i + 1) for i in range(3)
    ]
    assert wl.delete(f"/v1/waitlist/{ids[0]}", headers=patients[0][1]).status_code == 204
    mine = wl.get("/v1/waitlist", headers=patients[2][1]).json()["items"]
    assert [e["position"] for e in mine] == [2]
    assert wl.get("/v1/waitlist", headers=patients[0][1]).json()["items"] == []
    page = wl.get("/v1/me/waitlist?limit=1", headers=doc).json()
    assert [e["id"] for e in page["items"]] == [ids[1]]
    assert page["next_cursor"]
    rest = wl.get(f"/v1/me/waitlist?limit=1&cursor={page['next_cursor']}", headers=doc).json()
    assert [(e["id"], e["position"]) for e in rest["items"]] == [(ids[2], 2)]


def test_bad_waitlist_input_is_refused_with_the_documented_codes(
    wl_server: ServerProcess, wl: httpx.Client, unique: Callable[[], int]
) -> None:
    """A window in the past, inverted or over 62 days: 422; an unknown doctor: 404; the
    eleventh entry: 409 waitlist_limit; an overlapping entry: 409 already_waiting; a doctor on
    the patient routes: 403; someone else's entry: 404; unknown fields: 422."""
    doctor_id, doc = new_doctor(wl, unique)
    _, me = patient(wl_server, unique())
    now = datetime.now(UTC)
    problem(wait(wl, me, doctor_id, now - timedelta(hours=1), now + timedelta(days=1)), 422)
    problem(wait(wl, me, doctor_id, later(5), later(1)), 422)
    problem(wait(wl, me, doctor_id, later(1), later(1)), 422)
    problem(wait(wl, me, doctor_id, later(0), later(days=62, hours=1)), 422)
    problem(wl.post("/v1/waitlist", headers=me, json={"doctor_id": doctor_id, "from": "x",
                                                       "to": iso(later(1))}), 422)  # fmt: skip
    problem(wl.post("/v1/waitlist", headers=me, json={"doctor_id": doctor_id,
                    "from": iso(later(1)), "to": iso(later(2)), "extra": 1}), 422)  # fmt: skip
    problem(wait(wl, me, "D0000000000000000000000000", later(0), later(1)), 404, "doctor_not_found")
    problem(wait(wl, me, "../../etc", later(0), later(1)), 404)
    assert wait(wl, me, doctor_id, later(0), later(days=62)).status_code == 201
    problem(wait(wl, me, doctor_id, later(5), later(6)), 409, "already_waiting")
    others = [new_doctor(wl, unique)[0] for _ in range(9)]
    for other in others:
        assert wait(wl, me, other, later(0), later(1)).status_code == 201
    eleventh_doctor, _ = new_doctor(wl, unique)
    problem(wait(wl, me, eleventh_doctor, later(0), later(1)), 409, "waitlist_limit")
    assert len(wl.get("/v1/waitlist", headers=me).json()["items"]) == 10
    problem(wait(wl, doc, doctor_id, later(0), later(1)), 403)
    problem(wl.get("/v1/waitlist", headers=doc), 403)
    entry = wl.get("/v1/waitlist", headers=me).json()["items"][0]["id"]
    problem(wl.delete(f"/v1/waitlist/{entry}", headers=doc), 403)
    problem(wl.post(f"/v1/waitlist/{entry}/decline", headers=doc), 403)
    problem(wl.get("/v1/me/waitlist", headers=me), 403)
    _, stranger = patient(wl_server, unique())
    problem(wl.delete(f"/v1/waitlist/{entry}", headers=stranger), 404)
    problem(wl.post(f"/v1/waitlist/{entry}/decline", headers=stranger), 404)
    problem(wl.post(f"/v1/waitlist/{entry}/decline", headers=me), 409, "no_offer")
    problem(wl.get("/v1/me/waitlist?limit=0", headers=doc), 422)
    problem(wl.get("/v1/me/waitlist?cursor=%%%", headers=doc), 422)


# --- holds ------------------------------------------------------------------------------------
def real_patient(http: httpx.Client, n: int) -> dict[str, Any]:
    profile = register_patient(http, n)
    pair = login_patient(http, profile)
    return {"id": profile["id"], "headers": bearer(pair), "token": pair["access_token"],
            "email": profile["email"]}  # fmt: skip


def book(http: httpx.Client, headers: dict[str, str], slot: str) -> httpx.Response:
    return http.post("/v1/appointments", headers=headers, json={"slot_id": slot})


def cancel(http: httpx.Client, headers: dict[str, str], appt: str) -> httpx.Response:
    return http.post(f"/v1/appointments/{appt}/cancel", headers=headers,
                     json={"justification": "a change of plans"})  # fmt: skip


def own_slot(http: httpx.Client, doc: dict[str, str], slot: str) -> dict[str, Any]:
    to = iso(later(days=30))
    items = http.get(f"/v1/me/slots?to={to}", headers=doc).json()["items"]
    return next(dict(s) for s in items if s["id"] == slot)


def test_three_patients_wait_and_a_cancelled_slot_passes_down_the_line(
    wl_server: ServerProcess, wl: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """A confirmed appointment is cancelled: the first waiting patient is offered the slot
    (event within a second, and an e-mail), the others' bookings of it get 409; the first
    declines and the second gets it; the second's hold lapses and the third gets it; the
    third books it, its entry is gone and the fourth moves up."""
    doctor_id, doc = new_doctor(wl, unique)
    start, end = later(3), later(4)
    (slot,) = make_slots(wl, doc, [(start, end)])
    booker = real_patient(wl, unique())
    appt = post(wl, "/v1/appointments", booker["headers"], {"slot_id": slot})["id"]
    post(wl, f"/v1/appointments/{appt}/accept", doc)
    p = [real_patient(wl, unique()) for _ in range(4)]
    entries = [post(wl, "/v1/waitlist", x["headers"], {"doctor_id": doctor_id,
                    "from": iso(later(0)), "to": iso(later(days=2))})["id"] for x in p]  # fmt: skip

    async def flow() -> list[dict[str, Any]]:
        listeners = [await Listener.open(wl_server, x["token"]) for x in p[:3]]
        try:
            t0 = time.monotonic()
            r = await asyncio.to_thread(cancel, wl, booker["headers"], appt)
            assert r.status_code == 200, r.text
            first = await listeners[0].until("waitlist.offered", seconds=1)
            assert time.monotonic() - t0 < timeout(1)
            for other in p[1:]:
                problem(await asyncio.to_thread(book, wl, other["headers"], slot), 409,
                        "slot_unavailable")  # fmt: skip
            held = await asyncio.to_thread(own_slot, wl, doc, slot)
            assert held["status"] == "held"
            assert held["hold"]["entry_id"] == entries[0]
            assert held["hold"]["patient_id"] == p[0]["id"]
            agenda = wl.get(f"/v1/doctors/{doctor_id}/slots", headers=p[1]["headers"]).json()
            assert [s["status"] for s in agenda["slots"]] == ["taken"]
            r = await asyncio.to_thread(wl.post, f"/v1/waitlist/{entries[0]}/decline",
                                        headers=p[0]["headers"])  # fmt: skip
            assert r.status_code == 204, r.text
            second = await listeners[1].until("waitlist.offered", seconds=1)
            problem(await asyncio.to_thread(book, wl, p[0]["headers"], slot), 409)
            problem(await asyncio.to_thread(book, wl, p[2]["headers"], slot), 409)
            third = await listeners[2].until("waitlist.offered", seconds=HOLD_SECONDS + 5)
            return [first, second, third]
        finally:
            for listener in listeners:
                await listener.ws.close()

    first, second, third = asyncio.run(flow())
    for frame, x, entry in zip((first, second, third), p, entries, strict=False):
        assert frame["topic"] == f"patient.{x['id']}.appointments"
        assert frame["data"]["entry_id"] == entry
        assert frame["data"]["slot"] == {"id": slot, "start": iso(start), "end": iso(end)}
        assert frame["data"]["hold_expires_at"]
    mail = wait_kind(sink, p[0]["email"], "waitlist.offered")
    assert "reservado para você" in mail.message.get_body(("plain",)).get_content()
    mine = wl.get("/v1/waitlist", headers=p[2]["headers"]).json()["items"]
    assert mine[0]["offer"]["slot"]["id"] == slot
    assert [
        e["position"] for e in wl.get("/v1/waitlist", headers=p[3]["headers"]).json()["items"]
    ] == [4]
    assert book(wl, p[2]["headers"], slot).status_code == 201
    assert wl.get("/v1/waitlist", headers=p[2]["headers"]).json()["items"] == []
    assert [
        e["position"] for e in wl.get("/v1/waitlist", headers=p[3]["headers"]).json()["items"]
    ] == [3]
    assert [
        e["offer"] for e in wl.get("/v1/waitlist", headers=p[0]["headers"]).json()["items"]
    ] == [None]
    assert own_slot(wl, doc, slot)["status"] == "requested"


def race(server: ServerProcess, slot: str, headers: list[dict[str, str]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout(60),
                                     limits=limits) as client:  # fmt: skip
            start = asyncio.Event()

            async def one(h: dict[str, str]) -> httpx.Response:
                await start.wait()
                return await client.post("/v1/appointments", headers=h, json={"slot_id": slot})

            tasks = [asyncio.create_task(one(h)) for h in headers]
            await asyncio.sleep(0.2)
            start.set()
            return await asyncio.gather(*tasks)

    return asyncio.run(go())


@pytest.mark.parametrize("waiting", [True, False], ids=["with-waitlist", "no-waitlist"])
def test_two_hundred_patients_race_for_a_freed_slot(
    long_server: ServerProcess, long: httpx.Client, unique: Callable[[], int], waiting: bool
) -> None:
    """A booked slot is cancelled and 200 patients (the holder among them, if a waitlist
    exists) book it at once: with a waitlist only the holder wins; without, exactly one."""
    doctor_id, doc = new_doctor(long, unique)
    (slot,) = make_slots(long, doc, [(later(5), later(6))])
    _, booker = patient(long_server, unique())
    appt = post(long, "/v1/appointments", booker, {"slot_id": slot})["id"]
    holder_id, holder = patient(long_server, unique())
    if waiting:
        assert wait(long, holder, doctor_id, later(0), later(days=1)).status_code == 201
    assert cancel(long, booker, appt).status_code == 200
    crowd = [forge(long_server, f"P{uuid.uuid4().hex}", "patient") for _ in range(199)]
    responses = race(long_server, slot, [holder, *crowd])
    statuses = [r.status_code for r in responses]
    assert sorted(statuses).count(201) == 1, statuses
    assert statuses.count(409) == 199, statuses
    if waiting:
        assert statuses[0] == 201
        assert responses[0].json()["patient_id"] == holder_id


def test_redis_flushed_during_a_hold_keeps_the_same_holder_until_the_same_expiry(
    long_server: ServerProcess, long: httpx.Client, long_redis: RedisServer,
    unique: Callable[[], int],
) -> None:  # fmt: skip
    """FLUSHALL while a slot is held: after the rebuild the same entry holds it until the
    same instant, others still get 409 and the holder books it."""
    doctor_id, doc = new_doctor(long, unique)
    (slot,) = make_slots(long, doc, [(later(7), later(8))])
    _, booker = patient(long_server, unique())
    appt = post(long, "/v1/appointments", booker, {"slot_id": slot})["id"]
    holder_id, holder = patient(long_server, unique())
    _, other = patient(long_server, unique())
    entry = wait(long, holder, doctor_id, later(0), later(days=1)).json()["id"]
    wait(long, other, doctor_id, later(0), later(days=1))
    assert cancel(long, booker, appt).status_code == 200
    before = own_slot(long, doc, slot)
    assert before["hold"]["entry_id"] == entry
    client = redis.Redis.from_url(long_redis.url)
    client.flushall()
    client.close()
    after = own_slot(long, doc, slot)
    assert (after["status"], after["hold"]) == ("held", before["hold"])
    problem(book(long, other, slot), 409, "slot_unavailable")
    r = book(long, holder, slot)
    assert r.status_code == 201, r.text
    assert r.json()["patient_id"] == holder_id


def test_time_off_removes_the_slots_it_frees_instead_of_offering_them(
    long: httpx.Client, unique: Callable[[], int]
) -> None:
    """A patient waits for the doctor over a range the doctor then takes off: the request and
    the confirmed appointment inside are refused and cancelled, and their slots are removed
    (listed in removed_slots, gone from the agenda), never held for the waiting patient."""
    doctor_id, doc = new_doctor(long, unique)
    spans = [(later(3), later(4)), (later(5), later(6))]
    requested_slot, confirmed_slot = make_slots(long, doc, spans)
    requester, confirmed, waiting = (real_patient(long, unique()) for _ in range(3))
    requested = post(long, "/v1/appointments", requester["headers"], {"slot_id": requested_slot})
    booked = post(long, "/v1/appointments", confirmed["headers"], {"slot_id": confirmed_slot})
    post(long, f"/v1/appointments/{booked['id']}/accept", doc)
    window = {"doctor_id": doctor_id, "from": iso(later(0)), "to": iso(later(days=1))}
    entry = post(long, "/v1/waitlist", waiting["headers"], window)
    off = long.post(
        "/v1/me/time-off",
        headers=doc,
        json={"from": iso(later(2)), "to": iso(later(7)), "cancel_confirmed": True,
              "justification": "congresso médico fora da cidade"},
    )  # fmt: skip
    assert off.status_code == 201, off.text
    body = off.json()
    assert body["refused_requests"] == [requested["id"]]
    assert body["cancelled_appointments"] == [booked["id"]]
    assert sorted(body["removed_slots"]) == sorted([requested_slot, confirmed_slot])
    to = iso(later(days=30))
    mine = long.get(f"/v1/me/slots?to={to}", headers=doc).json()["items"]
    assert {s["id"] for s in mine} & {requested_slot, confirmed_slot} == set()
    (still,) = long.get("/v1/waitlist", headers=waiting["headers"]).json()["items"]
    assert (still["id"], still["offer"]) == (entry["id"], None)
    problem(book(long, waiting["headers"], requested_slot), 404)
