"""The real server on DynamoDB (moto over HTTP): accounts live in the table, survive restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx

from engine.store._dynamodb import DynamoDBStore
from tests.support import ServerProcess


def cpf_from(number: int) -> str:
    """A valid CPF (11 digits with check digits) derived from ``number``."""
    digits = [int(c) for c in f"{number % 10**9:09d}"]
    for length in (9, 10):
        total = sum(d * w for d, w in zip(digits, range(length + 1, 1, -1), strict=True))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, digits))


def test_accounts_persist_in_dynamodb_across_a_restart(
    moto_endpoint: str,
    start_server: Callable[..., ServerProcess],
    unique: Callable[[], int],
) -> None:
    """A patient registered on a DynamoDB-backed server logs in again after a restart."""
    table = f"e2e-{uuid.uuid4().hex}"
    n = unique()
    email = f"patient{n}@example.com"
    server = start_server(
        HEALTHMED_ENV="test",
        HEALTHMED_STORE_URL=f"dynamodb://{table}?create=true",
        AWS_ENDPOINT_URL=moto_endpoint,
    )
    body = {"name": "Ana Souza", "email": email, "cpf": cpf_from(n), "password": "s3cret-pass"}
    login = {"email": email, "password": "s3cret-pass"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/patients", json=body).status_code == 201, server.logs()
        assert http.post("/v1/patients", json=body).status_code == 409
        assert http.post("/v1/auth/patients/login", json=login).status_code == 200

    async def stored_email() -> str:
        store = await DynamoDBStore.open(table, endpoint_url=moto_endpoint)
        try:
            guard = await store.get(f"UNIQUE#email#{email}", "UNIQUE")
            assert guard is not None
            profile = await store.get(f"USER#{guard.data['user_id']}", "PROFILE")
            assert profile is not None
            return str(profile.data["email"])
        finally:
            await store.close()

    assert asyncio.run(stored_email()) == email
    assert not list(server.data_dir.glob("*.sqlite3")), "the server used SQLite, not DynamoDB"

    server.restart()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/v1/auth/patients/login", json=login)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        me = http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["email"] == email
        assert http.post("/v1/patients", json=body).status_code == 409
