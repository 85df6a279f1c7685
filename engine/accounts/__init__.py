"""Accounts: doctors and patients, their credentials, tokens and profiles.

Registration validates and hashes (Argon2id), uniqueness is a store condition; login is rate
limited per account and per address in Redis; access tokens are JWTs (:mod:`.tokens`) and
refresh tokens rotating opaque strings whose families live in the durable store. TOTP 2FA
(:mod:`._mfa`) and the flows that check a secret again (:mod:`._security`) sit on top.
"""

from __future__ import annotations

from engine.accounts._revocations import Revocations
from engine.accounts._service import AccountService
from engine.accounts.models import (
    CodeBody,
    DoctorLogin,
    DoctorPatch,
    DoctorProfile,
    DoctorRegistration,
    Erasure,
    Location,
    MfaChallenge,
    MfaEnrolment,
    MfaLogin,
    Money,
    PasswordBody,
    PasswordChange,
    PasswordReset,
    PasswordResetConfirm,
    PatientLogin,
    PatientProfile,
    PatientRegistration,
    Profile,
    Rating,
    RecoveryCodes,
    RefreshRequest,
    ResetAccepted,
    TokenPair,
)
from engine.accounts.tokens import AccessTokens

__all__ = [
    "AccessTokens",
    "AccountService",
    "CodeBody",
    "DoctorLogin",
    "DoctorPatch",
    "DoctorProfile",
    "DoctorRegistration",
    "Erasure",
    "Location",
    "MfaChallenge",
    "MfaEnrolment",
    "MfaLogin",
    "Money",
    "PasswordBody",
    "PasswordChange",
    "PasswordReset",
    "PasswordResetConfirm",
    "PatientLogin",
    "PatientProfile",
    "PatientRegistration",
    "Profile",
    "Rating",
    "RecoveryCodes",
    "RefreshRequest",
    "ResetAccepted",
    "Revocations",
    "TokenPair",
]
