"""The doctor directory: search by specialty, distance and rating over Redis GEO."""

from __future__ import annotations

from engine.directory._models import DoctorCard, SearchPage, Specialty, SpecialtyList
from engine.directory._service import EARTH_RADIUS_KM, DirectoryService

__all__ = [
    "EARTH_RADIUS_KM",
    "DirectoryService",
    "DoctorCard",
    "SearchPage",
    "Specialty",
    "SpecialtyList",
]
