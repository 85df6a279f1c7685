"""The doctor directory over HTTP: specialties, search semantics, pagination, roles, moves.

Each test registers its doctors under a specialty slug of its own, so tests sharing the module
server never see each other's doctors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e._accounts import (
    SAO_PAULO,
    bearer,
    login_doctor,
    patient_session,
    register_doctor,
)

Unique = Callable[[], int]
KM_PER_DEGREE_LAT = 111.2


def _slug(unique: Unique, name: str) -> str:
    return f"{name}-{unique()}"


def _at(north_km: float) -> dict[str, float]:
    return {"lat": SAO_PAULO[0] + north_km / KM_PER_DEGREE_LAT, "lon": SAO_PAULO[1]}


def _search(http: httpx.Client, auth: dict[str, str], **params: Any) -> httpx.Response:
    return http.get("/v1/doctors", params=params, headers=auth)


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["items"]]


@pytest.fixture
def auth(http: httpx.Client, unique: Unique) -> dict[str, str]:
    return patient_session(http, unique())


def test_specialties_list_slugs_with_counts(http: httpx.Client, unique: Unique) -> None:
    """Anyone may list specialties; a new slug appears with its number of doctors."""
    slug = _slug(unique, "endocrinologia")
    for _ in range(2):
        register_doctor(http, unique(), specialty=slug.upper())
    r = http.get("/v1/specialties")
    assert r.status_code == 200
    listed = {s["slug"]: s["doctors"] for s in r.json()["items"]}
    assert listed[slug] == 2


def test_search_orders_by_distance_and_reports_it(
    http: httpx.Client, unique: Unique, auth: dict[str, str]
) -> None:
    """With lat/lon: nearest first, each with ``distance_km``, and the card's fields."""
    slug = _slug(unique, "distance")
    far = register_doctor(http, unique(), specialty=slug, location=_at(40))
    near = register_doctor(http, unique(), specialty=slug, location=_at(2))
    mid = register_doctor(http, unique(), specialty=slug, location=_at(15))
    r = _search(http, auth, specialty=slug, lat=SAO_PAULO[0], lon=SAO_PAULO[1])
    assert _ids(r) == [near["id"], mid["id"], far["id"]]
    items = r.json()["items"]
    assert [round(i["distance_km"]) for i in items] == [2, 15, 40]
    card = items[0]
    assert {"id", "name", "specialty", "crm", "uf", "city", "rating", "price"} <= card.keys()
    assert card["price"] == {"amount_cents": 25_000, "currency": "BRL"}
    assert "email" not in card


def test_max_km_cuts_by_distance(http: httpx.Client, unique: Unique, auth: dict[str, str]) -> None:
    """``max_km=10`` keeps the doctor 2 km away and drops the one 40 km away."""
    slug = _slug(unique, "radius")
    near = register_doctor(http, unique(), specialty=slug, location=_at(2))
    register_doctor(http, unique(), specialty=slug, location=_at(40))
    r = _search(http, auth, specialty=slug, lat=SAO_PAULO[0], lon=SAO_PAULO[1], max_km=10)
    assert _ids(r) == [near["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"max_km": 10},
        {"max_km": 10, "lat": SAO_PAULO[0]},
        {"lat": SAO_PAULO[0]},
        {"min_rating": 6},
        {"min_rating": -1},
        {"limit": 0},
        {"limit": 101},
        {"lat": "north", "lon": 1},
        {"cursor": "not-a-cursor"},
        {"specialty": "Não Slug"},
    ],
    ids=[
        "max_km-no-location",
        "max_km-no-lon",
        "lat-alone",
        "rating-high",
        "rating-low",
        "limit-0",
        "limit-101",
        "lat-text",
        "garbled-cursor",
        "bad-slug",
    ],
)
def test_invalid_search_is_422(http: httpx.Client, auth: dict[str, str], params: dict) -> None:
    """Each malformed search is a 422 problem, never a 500."""
    r = _search(http, auth, **params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"]


def test_specialty_is_exact(http: httpx.Client, unique: Unique, auth: dict[str, str]) -> None:
    """A prefix of a slug matches nothing."""
    slug = _slug(unique, "oftalmologia")
    doc = register_doctor(http, unique(), specialty=slug)
    assert _ids(_search(http, auth, specialty=slug)) == [doc["id"]]
    assert _ids(_search(http, auth, specialty=slug[:-1])) == []


def test_min_rating_leaves_unrated_doctors_out(
    http: httpx.Client, unique: Unique, auth: dict[str, str]
) -> None:
    """New doctors have no rating: ``min_rating=0`` keeps them, any floor above 0 does not."""
    slug = _slug(unique, "unrated")
    doc = register_doctor(http, unique(), specialty=slug)
    assert _ids(_search(http, auth, specialty=slug, min_rating=0)) == [doc["id"]]
    assert _ids(_search(http, auth, specialty=slug, min_rating=0.5)) == []
    located = _search(http, auth, specialty=slug, min_rating=1, lat=SAO_PAULO[0], lon=SAO_PAULO[1])
    assert _ids(located) == []


@pytest.mark.parametrize("located", [False, True], ids=["by-rating", "by-distance"])
def test_cursor_pagination_walks_all_doctors_once(
    http: httpx.Client, unique: Unique, auth: dict[str, str], located: bool
) -> None:
    """Pages of 2 over 5 doctors: 3 pages, every doctor once, the last without a cursor."""
    slug = _slug(unique, "pages")
    ids = {register_doctor(http, unique(), specialty=slug, location=_at(k))["id"] for k in range(5)}
    where = {"lat": SAO_PAULO[0], "lon": SAO_PAULO[1]} if located else {}
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params = {"specialty": slug, "limit": 2, **where}
        if cursor:
            params["cursor"] = cursor
        r = _search(http, auth, **params)
        seen += _ids(r)
        cursor = r.json()["next_cursor"]
    assert cursor is None
    assert len(seen) == 5
    assert set(seen) == ids
    if not located:
        assert seen == sorted(seen)  # all unrated: ties by id


def test_search_is_for_patients(http: httpx.Client, unique: Unique) -> None:
    """A doctor searching is 403; no token is 401."""
    doctor = login_doctor(http, register_doctor(http, unique()))
    r = http.get("/v1/doctors", headers=bearer(doctor))
    assert r.status_code == 403
    assert r.json()["code"] == "wrong_role"
    assert http.get("/v1/doctors").status_code == 401


def test_patch_moves_a_doctor_between_specialties(
    http: httpx.Client, unique: Unique, auth: dict[str, str]
) -> None:
    """After PATCH /v1/me with a new specialty the doctor is found only under the new one,
    at its new location."""
    old, new = _slug(unique, "before"), _slug(unique, "after")
    profile = register_doctor(http, unique(), specialty=old)
    doctor = login_doctor(http, profile)
    r = http.patch("/v1/me", json={"specialty": new, "location": _at(30)}, headers=bearer(doctor))
    assert r.status_code == 200, r.text
    assert _ids(_search(http, auth, specialty=old)) == []
    assert _ids(_search(http, auth, specialty=new)) == [profile["id"]]
    located = _search(http, auth, specialty=new, lat=SAO_PAULO[0], lon=SAO_PAULO[1], max_km=10)
    assert _ids(located) == []
    listed = {s["slug"] for s in http.get("/v1/specialties").json()["items"]}
    assert new in listed
    assert old not in listed
