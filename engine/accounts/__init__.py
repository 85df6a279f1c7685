"""Accounts: doctors and patients, their credentials, tokens and profiles.

Registration validates and hashes (Argon2id), uniqueness is a store condition; login is rate
limited per account and per address in Redis; access tokens are JWTs (:mod:`.tokens`) and
refresh tokens rotating opaque strings whose families live in the durable store.
"""

from __future__ import annotations

from engine.accounts._revocations import Revocations
from engine.accounts._service import AccountService
from engine.accounts.models import (
    DoctorLogin,
    DoctorPatch,
    DoctorProfile,
    DoctorRegistration,
    Location,
    Money,
    PatientLogin,
    PatientProfile,
    PatientRegistration,
    Profile,
    Rating,
    RefreshRequest,
    TokenPair,
)
from engine.accounts.tokens import AccessTokens

__all__ = [
    "AccessTokens",
    "AccountService",
    "DoctorLogin",
    "DoctorPatch",
    "DoctorProfile",
    "DoctorRegistration",
    "Location",
    "Money",
    "PatientLogin",
    "PatientProfile",
    "PatientRegistration",
    "Profile",
    "Rating",
    "RefreshRequest",
    "Revocations",
    "TokenPair",
]
