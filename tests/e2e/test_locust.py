"""Locust smoke test: the scenarios of ``loadtest/locustfile.py`` run for a few seconds with a
few users against the real server, seeded by ``healthmed seed``, without a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import ROOT, RedisServer, ServerProcess, timeout

BIN = Path(sys.executable).parent


def test_a_short_locust_run_has_no_failures(
    server: ServerProcess, module_redis: RedisServer, tmp_path: Path
) -> None:
    """Six patients and two doctors for ten seconds: requests flow, every user's websocket
    connects and authenticates, nothing fails, and no slot ends with two active bookings."""
    env = {
        **os.environ,
        "HEALTHMED_ENV": "test",
        "HEALTHMED_DATA_DIR": str(server.data_dir),
        "HEALTHMED_REDIS_URL": module_redis.url,
    }
    creds = tmp_path / "creds.json"
    subprocess.run(
        [BIN / "healthmed", "seed", "--doctors", "2", "--patients", "6", "--days", "3",
         "--past", "2", "--out", str(creds)],
        env=env, check=True, timeout=timeout(120), capture_output=True,
    )  # fmt: skip
    summary = tmp_path / "summary.json"
    run = subprocess.run(
        [BIN / "locust", "-f", "loadtest/locustfile.py", "--headless", "-u", "8", "-r", "8",
         "-t", "10s", "--host", server.url, "--credentials", str(creds), "--summary",
         str(summary), "--only-summary", "--stop-timeout", "20", "--event-timeout", "20"],
        cwd=ROOT, timeout=timeout(120), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(summary.read_text())
    assert figures["requests"] > 8
    assert figures["failures"] == 0, figures["errors"]
    assert figures["ws"]["connect"] == {"count": 8, "failures": 0}
    assert figures["ws"]["auth"] == {"count": 8, "failures": 0}
    for name in ("decision event", "slot event"):
        assert figures["ws"].get(name, {"failures": 0})["failures"] == 0
    doctors = json.loads(creds.read_text())["doctors"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for doctor in doctors:
            token = http.post(
                "/v1/auth/doctors/login",
                json={"crm": doctor["crm"], "uf": doctor["uf"], "password": "seeded password 2026"},
            ).json()["access_token"]
            items = http.get(
                "/v1/appointments",
                params={"limit": 100},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["items"]
            active = [a["slot"]["id"] for a in items if a["status"] in ("requested", "confirmed")]
            assert len(active) == len(set(active))
