"""Two real server replicas on a real Redis Cluster (``HEALTHMED_REDIS_CLUSTER=true``):
events and revocations cross replicas whichever node a frame was published on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from websockets.asyncio.client import connect

from tests.e2e._accounts import (
    bearer,
    login_doctor,
    login_patient,
    register_doctor,
    register_patient,
)
from tests.support import RedisClusterNodes, ServerProcess, timeout, wait_until

SECRETS = {
    "HEALTHMED_JWT_SECRET": "c" * 48,
    "HEALTHMED_MEETING_SECRET": "m" * 48,
    "HEALTHMED_MASTER_KEY": "A" * 43,
}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_events_and_logouts_cross_replicas_on_a_cluster(
    redis_cluster: RedisClusterNodes,
    start_server: Callable[..., ServerProcess],
    unique: Callable[[], int],
) -> None:
    """Replica A's websocket gets the slot.updated and appointment.requested events of a
    booking made through replica B (published by a script on the doctor's master), and a
    logout through A is refused on B (its revocation follower hears it over pub/sub)."""
    env = {
        "HEALTHMED_REDIS_URL": redis_cluster.url,
        "HEALTHMED_REDIS_CLUSTER": "true",
        "HEALTHMED_ENV": "test",
        **SECRETS,
    }
    a, b = start_server(**env), start_server(**env)
    with httpx.Client(base_url=b.url, timeout=timeout(30)) as on_b:
        doctor = register_doctor(on_b, unique())
        doc_pair = login_doctor(on_b, doctor)
        patient_pair = login_patient(on_b, register_patient(on_b, unique()))
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        r = on_b.post(
            "/v1/me/slots",
            headers=bearer(doc_pair),
            json={"slots": [{"start": _iso(start), "end": _iso(start + timedelta(minutes=50))}]},
        )
        assert r.status_code == 201, r.text
        slot = r.json()["items"][0]["id"]
        async with connect(a.ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": doc_pair["access_token"]}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(
                json.dumps({"type": "subscribe", "topic": f"doctor.{doctor['id']}.slots"})
            )
            assert json.loads(await ws.recv())["type"] == "subscribed"
            booked = on_b.post(
                "/v1/appointments", headers=bearer(patient_pair), json={"slot_id": slot}
            )
            assert booked.status_code == 201, booked.text
            seen = set()
            async with asyncio.timeout(timeout(10)):
                while not {"slot.updated", "appointment.requested"} <= seen:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "event":
                        seen.add(frame["event"])
        with httpx.Client(base_url=a.url, timeout=timeout(30)) as on_a:
            out = on_a.post(
                "/v1/auth/logout",
                headers=bearer(patient_pair),
                json={"refresh_token": patient_pair["refresh_token"]},
            )
            assert out.status_code in (200, 204), out.text
        wait_until(
            lambda: on_b.get("/v1/appointments", headers=bearer(patient_pair)).status_code == 401,
            5,
            "replica B to refuse the logged-out token",
        )
