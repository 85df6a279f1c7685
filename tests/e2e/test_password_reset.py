"""Acceptance over HTTP: password reset by e-mail, the code read from the e-mail the server
wrote (the file transport's ``.eml``), on the real server process."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e._accounts import PASSWORD, bearer, login_patient, register_doctor, register_patient
from tests.support import ServerProcess, timeout

Unique = Callable[[], int]


def _reset_code(mail_dir: Path, to: str, seen: set[Path]) -> str:
    """The ``Code:`` of the newest reset e-mail to ``to`` not seen before (waits for it)."""
    deadline = time.monotonic() + timeout(20)
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")):
            if path in seen:
                continue
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if to not in str(message["To"]):
                continue
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found = re.search(r"^Code: (\S+)$", body.get_content(), re.M)
            if found:
                seen.add(path)
                return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no reset e-mail to {to} in {mail_dir}")


def test_password_reset_by_email(http: httpx.Client, server: ServerProcess, unique: Unique) -> None:
    """Unknown and known e-mails get the same 202 body; the known one's e-mail carries a
    code that sets a new password once, and revokes every session."""
    profile = register_patient(http, unique())
    pair = login_patient(http, profile)
    unknown = http.post("/v1/auth/password-reset", json={"email": f"nobody{unique()}@example.com"})
    known = http.post("/v1/auth/password-reset", json={"email": profile["email"]})
    assert (unknown.status_code, known.status_code) == (202, 202)
    assert unknown.json() == known.json()
    code = _reset_code(server.data_dir / "mail", profile["email"], set())
    bad = http.post(
        "/v1/auth/password-reset/confirm", json={"token": code + "x", "password": "n" * 12}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_reset_token")
    new = "a reset passphrase"
    ok = http.post("/v1/auth/password-reset/confirm", json={"token": code, "password": new})
    assert ok.status_code == 204, ok.text
    again = http.post("/v1/auth/password-reset/confirm", json={"token": code, "password": "m" * 12})
    assert (again.status_code, again.json()["code"]) == (422, "invalid_reset_token")
    assert http.get("/v1/me", headers=bearer(pair)).status_code == 401
    assert (
        http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    old = http.post(
        "/v1/auth/patients/login", json={"email": profile["email"], "password": PASSWORD}
    )
    assert old.status_code == 401
    fresh = http.post("/v1/auth/patients/login", json={"email": profile["email"], "password": new})
    assert fresh.status_code == 200
    export = http.get("/v1/me/export", headers=bearer(fresh.json()))
    assert export.status_code == 200, export.text
    kinds = [e["kind"] for e in export.json()["security_events"]]
    assert kinds == ["password.reset_requested", "password.reset"]
    assert code not in server.logs()


def test_doctor_password_reset_by_crm(
    http: httpx.Client, server: ServerProcess, unique: Unique
) -> None:
    """A doctor names the account by CRM and UF; the e-mail goes to the doctor's address and
    its code sets the password used by the doctors' login."""
    n = unique()
    profile = register_doctor(http, n)
    email_to = f"doctor{n}@example.com"
    unknown = http.post("/v1/auth/password-reset", json={"crm": "99999999", "uf": "AC"})
    known = http.post("/v1/auth/password-reset", json={"crm": profile["crm"], "uf": "SP"})
    assert (unknown.status_code, known.status_code) == (202, 202)
    assert unknown.json() == known.json()
    code = _reset_code(server.data_dir / "mail", email_to, set())
    new = "a doctor's new passphrase"
    ok = http.post("/v1/auth/password-reset/confirm", json={"token": code, "password": new})
    assert ok.status_code == 204, ok.text
    login = http.post(
        "/v1/auth/doctors/login", json={"crm": profile["crm"], "uf": "SP", "password": new}
    )
    assert login.status_code == 200, login.text
