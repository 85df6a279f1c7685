"""Wire shapes of the directory: search results and specialties."""

from __future__ import annotations

import msgspec

from engine.accounts.models import Money, Rating  # noqa: TC001  (resolved at runtime)


class DoctorCard(msgspec.Struct, frozen=True, kw_only=True):
    """One search result. ``distance_km`` only when a location was given; ``next_open_slot``
    (RFC 3339 start of the doctor's next open slot) only when there is one."""

    id: str
    name: str
    specialty: str
    crm: str
    uf: str
    city: str | None
    rating: Rating
    price: Money
    distance_km: float | msgspec.UnsetType = msgspec.UNSET
    next_open_slot: str | msgspec.UnsetType = msgspec.UNSET


class SearchPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DoctorCard]
    next_cursor: str | None


class Specialty(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    doctors: int


class SpecialtyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Specialty]
