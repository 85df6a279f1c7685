"""The whole Health&Med story against a running server, step by step, in plain HTTP.

    .venv/bin/python docs/walkthrough.py [BASE_URL]      (default http://127.0.0.1:8000)

A doctor registers and publishes a week of slots by rule; a patient registers, searches,
reads the agenda and books while the doctor watches the websocket; the doctor accepts, both
get the meeting link; the patient uploads an exam, shares it, the doctor downloads it, the
patient reads the access log, cancels, exports and erases the account. Each step prints the
call and what came back; any unexpected answer stops the walk with the server's problem.
It creates its own accounts (fresh numbers), so it runs on a fresh server or on demo data.
CI runs it (tests/e2e/test_walkthrough.py), so it cannot rot.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from websockets.sync.client import connect

PASSWORD = "walkthrough password"


def cpf(first_nine: str) -> str:
    """A valid CPF (mod-11 check digits) from nine digits."""
    digits = [int(c) for c in first_nine]
    for start in (10, 11):
        rest = sum(d * w for d, w in zip(digits, range(start, 1, -1), strict=False)) % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return "".join(map(str, digits))


class Walk:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.base = base

    def call(self, what: str, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        print(f"{what:<44} {method} {path} -> {r.status_code}")
        if r.status_code != expect:
            sys.exit(f"expected {expect}, got {r.status_code}: {r.text}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def main(base: str) -> None:
    w = Walk(base)
    n = secrets.randbelow(10**8)
    print(f"Health&Med walkthrough against {base}\n")

    # 1. accounts
    doctor = w.call(
        "register a doctor",
        "POST",
        "/v1/doctors",
        201,
        json={
            "name": "Dra. Ana Souza",
            "crm": f"{n:08d}",
            "uf": "SP",
            "email": f"ana.{n}@example.com",
            "password": PASSWORD,
            "specialty": "cardiologia",
            "price_cents": 25000,
            "location": {"lat": -23.561, "lon": -46.656},
            "city": "São Paulo",
        },
    )
    patient = w.call(
        "register a patient",
        "POST",
        "/v1/patients",
        201,
        json={
            "name": "João Lima",
            "email": f"joao.{n}@example.com",
            "cpf": cpf(f"{n:09d}"),
            "password": PASSWORD,
        },
    )
    doc = bearer(
        w.call(
            "log in as the doctor",
            "POST",
            "/v1/auth/doctors/login",
            200,
            json={"crm": doctor["crm"], "uf": "SP", "password": PASSWORD},
        )
    )
    pat = bearer(
        w.call(
            "log in as the patient",
            "POST",
            "/v1/auth/patients/login",
            200,
            json={"email": patient["email"], "password": PASSWORD},
        )
    )

    # 2. the doctor publishes a week of mornings by rule
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    rule = {
        "from": str(tomorrow),
        "to": str(tomorrow + timedelta(days=6)),
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "start_time": "09:00",
        "end_time": "12:00",
        "timezone": "America/Sao_Paulo",
    }
    slots = w.call(
        "publish slots by a weekly rule",
        "POST",
        "/v1/me/slots",
        201,
        headers=doc,
        json={"rule": rule},
    )["items"]
    print(f"  {len(slots)} slots of 50 min, first {slots[0]['start']}")

    # 3. the patient searches and reads the agenda
    found = w.call(
        "search cardiologists near Paulista",
        "GET",
        "/v1/doctors",
        200,
        headers=pat,
        params={"specialty": "cardiologia", "lat": -23.56, "lon": -46.65, "max_km": 10},
    )["items"]
    assert any(d["id"] == doctor["id"] for d in found), "the new doctor is not in the search"
    agenda = w.call(
        "read the doctor's agenda", "GET", f"/v1/doctors/{doctor['id']}/slots", 200, headers=pat
    )
    slot = next(s for s in agenda["slots"] if s["status"] == "open")

    # 4. the doctor watches the websocket while the patient books
    ws_url = base.replace("http", "ws", 1) + "/v1/ws"
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": doc["Authorization"][7:]}))
        print(f"{'doctor websocket':<44} {json.loads(ws.recv(timeout=10))['type']}")
        appt = w.call(
            "book the slot",
            "POST",
            "/v1/appointments",
            201,
            headers=pat,
            json={"slot_id": slot["id"]},
        )
        event = json.loads(ws.recv(timeout=10))
        data = event["data"]
        who, start = data.get("patient_name"), data["slot"]["start"]
        print(f"  doctor is told: {event['event']}, {who} at {start}")
        assert event["event"] == "appointment.requested"

    # 5. accept, meeting link
    accepted = w.call(
        "the doctor accepts", "POST", f"/v1/appointments/{appt['id']}/accept", 200, headers=doc
    )
    print(f"  status {accepted['status']}, meeting at {accepted['meeting']['starts_at']}")
    link = w.call(
        "the patient's meeting link",
        "GET",
        f"/v1/appointments/{appt['id']}/meeting",
        200,
        headers=pat,
    )
    print(f"  {link['url'][:60]}...")

    # 6. health record: upload, share, the doctor downloads, the patient reads the log
    record = w.call(
        "upload an exam",
        "POST",
        "/v1/me/records",
        201,
        headers=pat,
        data={"kind": "exam", "group": "cardiology-2026", "title": "ECG"},
        files={"file": ("ecg.txt", b"ECG: sinus rhythm, 72 bpm\n", "text/plain")},
    )
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    w.call(
        "share the group with the doctor",
        "POST",
        "/v1/me/shares",
        201,
        headers=pat,
        json={"doctor_id": doctor["id"], "groups": ["cardiology-2026"], "expires_at": expires},
    )
    content = w.call(
        "the doctor downloads it",
        "GET",
        f"/v1/patients/{patient['id']}/records/{record['id']}/content",
        200,
        headers=doc,
    )
    print(f"  {content.content!r}")
    log = w.call(
        "the patient reads the access log", "GET", "/v1/me/records/access-log", 200, headers=pat
    )["items"]
    print(f"  {[(e['action'], e.get('doctor_name')) for e in log]}")

    # 7. cancel, export, erase
    w.call(
        "the patient cancels",
        "POST",
        f"/v1/appointments/{appt['id']}/cancel",
        200,
        headers=pat,
        json={"justification": "I have to travel that week"},
    )
    export = w.call("export my data (LGPD)", "GET", "/v1/me/export", 200, headers=pat)
    print(f"  sections: {sorted(export)}")
    w.call(
        "erase my account (LGPD)", "DELETE", "/v1/me", 204, headers=pat, json={"password": PASSWORD}
    )
    w.call(
        "the erased account cannot log in",
        "POST",
        "/v1/auth/patients/login",
        401,
        json={"email": patient["email"], "password": PASSWORD},
    )
    print("\nwalkthrough complete")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
