"""The waitlist end to end through the real server process: entries and their bad input, the
three-patient hand-over over HTTP and websockets (offer, decline, lapse, booking by the
holder), the 200-patient race for a freed slot with and without a waitlist, and a Redis flush
during a hold."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_booking import forge, iso, later, new_doctor, problem
from tests.support import RedisServer, ServerProcess, free_port

HOLD_SECONDS = 4


@pytest.fixture(scope="module")
def wl_server(
    module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose holds last HOLD_SECONDS, so a lapse can be watched."""
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("waitlist")),
        env={
            "HEALTHMED_REDIS_URL": module_redis.url,
            "HEALTHMED_ENV": "test",
            "HEALTHMED_WAITLIST_HOLD_SECONDS": str(HOLD_SECONDS),
        },
    ).start()
    yield proc
    proc.stop()


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
