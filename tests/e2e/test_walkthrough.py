"""The README's walkthrough (docs/walkthrough.py) runs start to end against a fresh server, and
against the demo data of `make demo` (the cast seeded, then the server on the same data)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import ROOT, ServerProcess, timeout


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """This interpreter on ``args`` from the checkout, as `make` runs it; it must exit 0."""
    run = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(120),
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _walk(url: str) -> None:
    run = _python(str(ROOT / "docs" / "walkthrough.py"), url)
    assert "walkthrough complete" in run.stdout
    assert "appointment.requested" in run.stdout


def test_the_walkthrough_completes(server: ServerProcess) -> None:
    """Every step of the story answers as the walkthrough expects, on a fresh server."""
    _walk(server.url)


def _demo_patient_appointments(http: httpx.Client, email: str, password: str) -> list[str]:
    r = http.post("/v1/auth/patients/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    page = http.get("/v1/appointments", headers=headers)
    assert page.status_code == 200, page.text
    return [a["status"] for a in page.json()["items"]]


def test_the_walkthrough_completes_on_the_demo_data(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`make demo` then `make walkthrough`: `healthmed seed --demo` on the embedded default, the
    server on the same data directory; the printed login works, the story runs to the end
    beside the demo cast, and the demo patient's confirmed appointment is still there."""
    data = tmp_path / "demo"
    env = {**os.environ, "HEALTHMED_DATA_DIR": str(data)}  # as the server gets it
    seeded = _python("-m", "gateway.cli", "seed", "--demo", env=env)
    assert "demo cast created" in seeded.stdout
    email = re.search(r"^\s+patient\s+(\S+@\S+)", seeded.stdout, re.MULTILINE)
    password = re.search(r"password for all: (.+)$", seeded.stdout, re.MULTILINE)
    assert email, seeded.stdout
    assert password, seeded.stdout
    srv = start_server(data_dir=data)
    with httpx.Client(base_url=srv.url, timeout=timeout(30)) as http:
        before = _demo_patient_appointments(http, email[1], password[1])
        assert before == ["confirmed"]
        _walk(srv.url)
        assert _demo_patient_appointments(http, email[1], password[1]) == before
