"""Doctors directory (docs/API.md): specialties, search, public profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import get
from litestar.params import Parameter

from engine.accounts import DoctorProfile  # noqa: TC001  (Litestar resolves at runtime)
from engine.accounts.models import SPECIALTY_PATTERN
from engine.accounts.validators import GEO_LAT_MAX
from engine.directory import EARTH_RADIUS_KM, SearchPage, SpecialtyList
from engine.paging import LIMIT_MAX
from gateway.problems import problems
from gateway.routes._paging import NextCursor  # noqa: TC001  (Litestar resolves at runtime)

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine


@get(
    "/v1/specialties",
    tags=["directory"],
    summary="Specialties with registered doctors",
    security=[{}],
)
async def specialties(engine: Engine) -> SpecialtyList:
    """`{items: [{slug, doctors}]}`, by slug."""
    return await engine.directory.specialties()


@get(
    "/v1/doctors",
    tags=["directory"],
    summary="Search doctors",
    responses=problems(401, 403, 422),
)
async def search_doctors(
    engine: Engine,
    patient: Principal,
    specialty: str | None = Parameter(
        default=None,
        description="exact specialty slug, case-insensitive (422 `invalid_specialty`)",
        schema_extra={"pattern": SPECIALTY_PATTERN},
    ),
    lat: float | None = Parameter(
        default=None,
        description="latitude of the patient; with lon (422 `location_required`, "
        "`invalid_location`)",
        schema_extra={"minimum": -GEO_LAT_MAX, "maximum": GEO_LAT_MAX},
    ),
    lon: float | None = Parameter(
        default=None,
        description="longitude of the patient; with lat",
        schema_extra={"minimum": -180, "maximum": 180},
    ),
    max_km: float | None = Parameter(
        default=None,
        description="keep doctors at most this far, above 0 and at most 20038 km; needs lat "
        "and lon (422 `location_required`, `invalid_distance`)",
        schema_extra={"exclusive_minimum": 0, "maximum": EARTH_RADIUS_KM},
    ),
    min_rating: float | None = Parameter(
        default=None,
        description="0-5; keeps doctors rated at least this; unrated doctors are left out by "
        "any value above 0 (422 `invalid_rating`)",
        schema_extra={"minimum": 0, "maximum": 5},
    ),
    limit: int | None = Parameter(
        default=None,
        description="page size, 1-100 (default 20; 422 `invalid_limit`)",
        schema_extra={"minimum": 1, "maximum": LIMIT_MAX},
    ),
    cursor: NextCursor = None,
) -> SearchPage:
    """Patients only (doctors: 403). Ordered by distance (then id) when `lat`/`lon` are
    given, otherwise by rating, best first (unrated last, ties by id). Without `max_km` a
    location orders every doctor by distance without a cut. `distance_km` is present when a
    location was given; `next_open_slot` when the doctor has an open slot ahead."""
    return await engine.directory.search(
        specialty=specialty,
        lat=lat,
        lon=lon,
        max_km=max_km,
        min_rating=min_rating,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/v1/doctors/{doctor_id:str}",
    tags=["directory"],
    summary="A doctor's public profile",
    responses=problems(401, 404),
)
async def doctor_profile(engine: Engine, principal: Principal, doctor_id: str) -> DoctorProfile:
    """Any authenticated caller. 404 for unknown or erased doctors."""
    del principal  # authentication is the only requirement
    return await engine.accounts.get_doctor(doctor_id)


route_handlers = [specialties, search_doctors, doctor_profile]
