"""Can someone who knows a doctor's public CRM and UF lock the doctor out? (issue 14, finding 6)

Starts its own server (``loadtest/_bench.py``), registers a doctor who logs in once (keeping
the ``device_token`` of the answer, if the server gives one, as the web client's cookie or an
app would), then sends ``--guesses`` wrong passwords for that CRM/UF from another client, and
then the doctor's right password: once with the device token, once without. Prints the
guesser's status counts, what the doctor got (status and ``retry_after``), and, from
``--v6`` addresses of one IPv6 /64 (sent through ``X-Forwarded-For`` behind a trusted proxy),
how many wrong passwords on unknown accounts were checked (401) before the first 429.

Usage: ``python loadtest/bench_lockout.py [--guesses 20] [--v6 120]``. Last line: ``key=value``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from _bench import PASSWORD, Conn, running_stack

LOGIN = "/v1/auth/doctors/login"


async def measure(port: int, guesses: int, v6: int) -> dict[str, object]:
    doctor, guesser = Conn(port), Conn(port)
    crm = {"crm": "7654321", "uf": "SP"}
    status, body = await doctor.post_json(
        "/v1/doctors",
        {
            **crm,
            "name": "Dra. Bench",
            "email": "lockout.bench@example.com",
            "password": PASSWORD,
            "specialty": "cardiologia",
            "price_cents": 20000,
            "location": {"lat": -23.55, "lon": -46.63},
        },
    )
    assert status == 201, body
    status, body = await doctor.post_json(LOGIN, {**crm, "password": PASSWORD})
    assert status == 200, body
    device = body.get("device_token")
    seen: Counter[int] = Counter()
    for _ in range(guesses):
        status, _ = await guesser.post_json(LOGIN, {**crm, "password": "wrong guess"})
        seen[status] += 1
    out: dict[str, object] = {f"guesser_{code}": n for code, n in sorted(seen.items())}
    with_device = {**crm, "password": PASSWORD, **({"device_token": device} if device else {})}
    status, body = await doctor.post_json(LOGIN, with_device)
    out["doctor_known_device"] = status
    status, body = await doctor.post_json(LOGIN, {**crm, "password": PASSWORD})
    out["doctor_unknown_client"] = status
    out["doctor_unknown_retry_after_s"] = (body or {}).get("retry_after", 0)
    checked = 0
    for i in range(v6):
        forwarded = {"X-Forwarded-For": f"2001:db8:14:6::{i + 1:x}"}
        status, _ = await guesser.post_json(
            "/v1/auth/patients/login",
            {"email": f"ghost{i}@example.com", "password": "wrong guess"},
            forwarded,
        )
        if status == 429:
            break
        checked += 1
    out["v6_same_64_checked_before_429"] = checked
    doctor.close()
    guesser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--guesses", type=int, default=20)
    parser.add_argument("--v6", type=int, default=120)
    args = parser.parse_args()
    env = {"HEALTHMED_TRUSTED_PROXIES": "127.0.0.1"}
    with running_stack("server", env=env) as stack:
        figures = asyncio.run(measure(stack.port, args.guesses, args.v6))
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
