"""Redis killed (``kill -9``) and restarted empty under the real server process: retried bookings
stay idempotent, and no request after recovery fails on a connection that died with Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e._accounts import bearer, login_doctor, patient_session, register_doctor
from tests.support import RedisServer, ServerProcess, timeout, wait_until


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def lossy(
    start_server: Callable[..., ServerProcess],
) -> Iterator[tuple[RedisServer, ServerProcess]]:
    """A server on a private redis-server that the test may kill and restart."""
    redis = RedisServer.start()
    try:
        # One patient holds four requests with one doctor here (one per key); the default cap
        # of 3 (issue 14 finding 4, tested in tests/integration/test_request_limits.py) would
        # refuse the fourth.
        yield (
            redis,
            start_server(
                HEALTHMED_REDIS_URL=redis.url,
                HEALTHMED_ENV="test",
                HEALTHMED_REQUEST_LIMIT_PER_DOCTOR="10",
            ),
        )
    finally:
        redis.stop()


def replace_redis(redis: RedisServer, http: httpx.Client) -> None:
    """kill -9, start an empty one on the same port, wait until the server is ready again."""
    redis.restart_empty()
    wait_until(lambda: http.get("/health/ready").status_code == 200, 30, "ready after restart")


def book(http: httpx.Client, headers: dict[str, str], slot: str, key: str) -> httpx.Response:
    return http.post(
        "/v1/appointments", headers={**headers, "Idempotency-Key": key}, json={"slot_id": slot}
    )


def test_replays_after_redis_is_replaced_return_the_first_response(
    lossy: tuple[RedisServer, ServerProcess], unique: Callable[[], int]
) -> None:
    """The issue's reproduction: keys whose appointments were refused, expired, requested and
    confirmed, and a key whose first answer was 409, each return their first response (status
    and body) after Redis is killed and restarted empty; nothing is booked twice."""
    redis, server = lossy
    with httpx.Client(base_url=server.url, timeout=30) as http:
        profile = register_doctor(http, unique())
        doc = bearer(login_doctor(http, profile))
        pat, rival = patient_session(http, unique()), patient_session(http, unique())
        now = datetime.now(UTC).replace(microsecond=0)
        soon = now + timedelta(minutes=15, seconds=timeout(4))  # its request expires in ~4 s
        base = now.replace(second=0) + timedelta(days=2)
        spans = [(soon, soon + timedelta(minutes=30))] + [
            (base + timedelta(hours=h), base + timedelta(hours=h, minutes=50)) for h in range(3)
        ]
        r = http.post(
            "/v1/me/slots",
            headers=doc,
            json={"slots": [{"start": iso(s), "end": iso(e)} for s, e in spans]},
        )
        assert r.status_code == 201, r.text
        expiring, refused, requested, confirmed = (item["id"] for item in r.json()["items"])
        slots = {"expired": expiring, "refused": refused, "requested": requested,
                 "confirmed": confirmed}  # fmt: skip
        first = {name: book(http, pat, slot, f"key-{name}") for name, slot in slots.items()}
        assert {f.status_code for f in first.values()} == {201}
        lost = book(http, rival, refused, "rival")
        assert lost.status_code == 409, lost.text
        ids = {name: f.json()["id"] for name, f in first.items()}
        assert (
            http.post(f"/v1/appointments/{ids['refused']}/refuse", headers=doc).status_code == 200
        )
        assert (
            http.post(f"/v1/appointments/{ids['confirmed']}/accept", headers=doc).status_code == 200
        )

        def expired() -> bool:
            r = http.get(f"/v1/appointments/{ids['expired']}", headers=pat)
            return bool(r.json()["status"] == "expired")

        wait_until(expired, 20, "the request to expire")

        replace_redis(redis, http)
        for name, slot in slots.items():
            again = book(http, pat, slot, f"key-{name}")
            assert (again.status_code, again.content) == (201, first[name].content), name
        again = book(http, rival, refused, "rival")
        assert (again.status_code, again.content) == (409, lost.content)
        reused = book(http, pat, requested, "key-refused")
        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
        mine = http.get("/v1/appointments", headers=pat).json()["items"]
        assert sorted(a["id"] for a in mine) == sorted(ids.values())
        assert http.get("/v1/appointments", headers=rival).json()["items"] == []
        statuses = {a["id"]: a["status"] for a in mine}
        assert [statuses[ids[n]] for n in slots] == ["expired", "refused", "requested", "confirmed"]


async def _burst(url: str, requests: list[tuple[str, str, dict[str, str], Any]]) -> list[int]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.request(m, p, headers=h, json=j) for m, p, h, j in requests)
        )
    return [r.status_code for r in responses]


def test_no_request_fails_after_redis_is_back(
    lossy: tuple[RedisServer, ServerProcess], unique: Callable[[], int]
) -> None:
    """The server's pool holds many Redis connections, Redis is killed and restarted empty, and
    once /health/ready says 200 a burst of agenda reads and bookings all succeed: no request
    meets a connection that died with the old Redis."""
    redis, server = lossy
    with httpx.Client(base_url=server.url, timeout=30) as http:
        profile = register_doctor(http, unique())
        doc = bearer(login_doctor(http, profile))
        base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
        r = http.post(
            "/v1/me/slots",
            headers=doc,
            json={"slots": [{"start": iso(base + timedelta(hours=h)),
                             "end": iso(base + timedelta(hours=h, minutes=50))}
                            for h in range(40)]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        slots = [item["id"] for item in r.json()["items"]]
        pats = [patient_session(http, unique()) for _ in range(20)]
        agenda = f"/v1/doctors/{profile['id']}/slots"
        warm = [("GET", agenda, pats[i % 20], None) for i in range(96)]
        assert set(asyncio.run(_burst(server.url, warm))) == {200}

        replace_redis(redis, http)
        burst = [("GET", agenda, pats[i % 20], None) for i in range(160)] + [
            ("POST", "/v1/appointments", {**pats[i], "Idempotency-Key": f"b{i}"},
             {"slot_id": slots[i]})
            for i in range(20)
        ]  # fmt: skip
        codes = asyncio.run(_burst(server.url, burst))
        assert codes == [200] * 160 + [201] * 20
