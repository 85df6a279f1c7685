"""Degraded mode through the real server process: with Redis stopped, what needs only the store
answers as before and what needs Redis answers 503 with ``Retry-After``; when an empty Redis
returns, what was done meanwhile holds and nothing is left half done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import websockets

from tests.e2e._accounts import (
    bearer,
    login_doctor,
    login_patient,
    register_doctor,
    register_patient,
)
from tests.support import RedisServer, ServerProcess, wait_until

PDF = b"%PDF-1.7\n" + b"degraded mode exam\n" * 50


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def lossy(
    start_server: Callable[..., ServerProcess],
) -> Iterator[tuple[RedisServer, ServerProcess]]:
    redis = RedisServer.start()
    try:
        yield redis, start_server(HEALTHMED_REDIS_URL=redis.url, HEALTHMED_ENV="test")
    finally:
        redis.stop()


def unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.request.url, r.text)
    assert int(r.headers["retry-after"]) > 0
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "redis_unavailable"


def test_store_only_routes_work_while_redis_is_down_and_the_rest_is_503(
    lossy: tuple[RedisServer, ServerProcess], unique: Callable[[], int]
) -> None:
    """Redis killed: /health/ready is 503 naming the degraded parts, /health/live 200; login
    (its failures still limited), own profile, appointments, records, shares, a doctor's
    accept and refuse, logout and the revocation it makes all work from the store; booking,
    slots, agenda, search and websockets answer 503 with Retry-After. Redis back (empty): the
    decisions hold, the refused slot is bookable again, the logged-out token stays refused."""
    redis, server = lossy
    with httpx.Client(base_url=server.url, timeout=30) as http:
        doctor = register_doctor(http, unique())
        doc = bearer(login_doctor(http, doctor))
        patient = register_patient(http, unique())
        pair = login_patient(http, patient)
        pat = bearer(pair)
        other = bearer(login_patient(http, patient))  # a second session of the same patient
        base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=2)
        spans = [(base + timedelta(hours=h), base + timedelta(hours=h, minutes=50)) for h in (1, 2)]
        r = http.post(
            "/v1/me/slots",
            headers=doc,
            json={"slots": [{"start": iso(s), "end": iso(e)} for s, e in spans]},
        )
        assert r.status_code == 201, r.text
        kept, freed = (item["id"] for item in r.json()["items"])
        a = http.post("/v1/appointments", headers=pat, json={"slot_id": kept}).json()
        b = http.post("/v1/appointments", headers=pat, json={"slot_id": freed}).json()

        redis.kill()
        ready = http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"redis": "down", "store": "ok"}
        assert "booking" in ready.json()["degraded"]
        assert http.get("/health/live").status_code == 200

        assert http.get("/v1/me", headers=pat).json()["id"] == patient["id"]
        relogged = bearer(login_patient(http, patient))  # login answers from the store
        assert http.get("/v1/me", headers=relogged).json()["id"] == patient["id"]
        wrong = {"email": patient["email"], "password": "not-the-password"}
        codes = [http.post("/v1/auth/patients/login", json=wrong).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]  # failures still limited, counted in the process
        assert http.get(f"/v1/appointments/{a['id']}", headers=pat).status_code == 200
        mine = http.get("/v1/appointments", headers=pat).json()["items"]
        assert {x["id"] for x in mine} == {a["id"], b["id"]}
        record = http.post(
            "/v1/me/records",
            headers=pat,
            data={"kind": "exam"},
            files={"file": ("exam.pdf", PDF, "application/pdf")},
        )
        assert record.status_code == 201, record.text
        expires = iso(datetime.now(UTC) + timedelta(days=7))
        share = http.post(
            "/v1/me/shares",
            headers=pat,
            json={"doctor_id": doctor["id"], "record_ids": [record.json()["id"]],
                  "expires_at": expires},
        )  # fmt: skip
        assert share.status_code == 201, share.text
        assert len(http.get("/v1/me/records", headers=pat).json()["items"]) == 1
        shared = http.get(f"/v1/patients/{patient['id']}/records", headers=doc)
        assert shared.status_code == 200, shared.text
        assert len(shared.json()["items"]) == 1
        accepted = http.post(f"/v1/appointments/{a['id']}/accept", headers=doc)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "confirmed"
        refused = http.post(f"/v1/appointments/{b['id']}/refuse", headers=doc)
        assert refused.status_code == 200, refused.text
        out = http.post(
            "/v1/auth/logout", headers=other, json={"refresh_token": pair["refresh_token"]}
        )
        assert out.status_code == 204, out.text
        assert http.get("/v1/me", headers=other).status_code == 401

        unavailable(http.post("/v1/appointments", headers=pat, json={"slot_id": freed}))
        unavailable(http.get(f"/v1/doctors/{doctor['id']}/slots", headers=pat))
        unavailable(http.get("/v1/doctors", headers=pat, params={"specialty": "cardiologia"}))
        unavailable(
            http.post(
                "/v1/me/slots",
                headers=doc,
                json={
                    "slots": [
                        {
                            "start": iso(base + timedelta(hours=5)),
                            "end": iso(base + timedelta(hours=6)),
                        }
                    ]
                },
            )
        )
        with pytest.raises(websockets.InvalidStatus) as refused_ws:
            asyncio.run(_connect(server.ws_url))
        assert refused_ws.value.response.status_code == 503
        assert refused_ws.value.response.headers["Retry-After"]

        redis.restart_empty()
        # Before the server has rebuilt the new Redis (its watcher ticks every second): the
        # empty Redis knows no revocation, the store does.
        assert http.get("/v1/me", headers=other).status_code == 401
        wait_until(lambda: http.get("/health/ready").status_code == 200, 30, "redis back")
        agenda = http.get(f"/v1/doctors/{doctor['id']}/slots", headers=pat).json()["slots"]
        assert {s["id"]: s["status"] for s in agenda} == {kept: "taken", freed: "open"}
        again = http.post("/v1/appointments", headers=pat, json={"slot_id": freed})
        assert again.status_code == 201, again.text
        assert http.get(f"/v1/appointments/{a['id']}", headers=pat).json()["status"] == "confirmed"
        assert http.post("/v1/appointments", headers=pat, json={"slot_id": kept}).status_code == 409
        assert http.get("/v1/me", headers=other).status_code == 401
        assert http.get("/v1/me", headers=pat).status_code == 200


async def _connect(url: str) -> None:
    async with websockets.connect(url, open_timeout=10):
        pass
