"""The embedded default (`make run`: in-process Redis, SQLite, files in the data directory)
keeps slots, appointments and health records across a restart: Redis is rebuilt from the
store on start."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.e2e._accounts import (
    bearer,
    login_doctor,
    login_patient,
    register_doctor,
    register_patient,
)
from tests.e2e.test_records import PDF, upload
from tests.support import ServerProcess


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_restart_keeps_slots_appointments_and_records(
    start_server: Callable[..., ServerProcess], unique: Callable[[], int]
) -> None:
    """After a restart: the confirmed appointment and its meeting, the taken and the open slot,
    the record's bytes; the open slot is still bookable and the taken one is not."""
    srv = start_server()
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=2)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        doctor = register_doctor(http, unique())
        doc = bearer(login_doctor(http, doctor))
        pat = bearer(login_patient(http, register_patient(http, unique())))
        times = [
            {
                "start": _z(start + timedelta(hours=h)),
                "end": _z(start + timedelta(hours=h, minutes=50)),
            }
            for h in (0, 1)
        ]
        r = http.post("/v1/me/slots", json={"slots": times}, headers=doc)
        assert r.status_code == 201, r.text
        taken, free = (s["id"] for s in r.json()["items"])
        appt = http.post("/v1/appointments", json={"slot_id": taken}, headers=pat).json()["id"]
        assert http.post(f"/v1/appointments/{appt}/accept", headers=doc).status_code == 200
        record = upload(http, pat, PDF).json()["id"]
    srv.restart()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        got = http.get(f"/v1/appointments/{appt}", headers=pat).json()
        assert (got["status"], got["slot"]["id"]) == ("confirmed", taken)
        assert http.get(f"/v1/appointments/{appt}/meeting", headers=pat).status_code == 200
        agenda = http.get(f"/v1/doctors/{doctor['id']}/slots", headers=pat).json()
        assert {s["id"]: s["status"] for s in agenda["slots"]} == {taken: "taken", free: "open"}
        again = http.post("/v1/appointments", json={"slot_id": taken}, headers=pat)
        assert again.status_code == 409
        other = bearer(login_patient(http, register_patient(http, unique())))
        assert (
            http.post("/v1/appointments", json={"slot_id": free}, headers=other).status_code == 201
        )
        content = http.get(f"/v1/me/records/{record}/content", headers=pat)
        assert (content.status_code, content.content) == (200, PDF)
