"""Every store key (partition ``pk`` and sort ``sk``), built in one place.

As :mod:`engine.keys` builds Redis keys, this module builds the single table's keys; a domain
module never writes ``f"USER#{...}"`` itself. The layout:

==========================  ===========================  ======================================
pk                          sk                           what
==========================  ===========================  ======================================
``USER#<id>``               ``PROFILE``                  doctor or patient account
``USER#<id>``               ``MFA``                      TOTP secret and recovery codes
``USER#<id>``               ``SEC#<ms>#<id>``            security event (kept: the last 500)
``USER#<id>``               ``REFRESH#<family>``         index of the user's refresh families
``USER#<id>``               ``APPT#<start>#<id>``        appointment index per participant
``USER#<id>``               ``IDEM#<sha256 of key>``     a booking's Idempotency-Key record
``USER#<id>``               ``REC#<id>``                 health record metadata + wrapped key
``USER#<id>``               ``SHARE#<id>``               a share of records/groups
``USER#<id>``               ``ACCESS#<ms>#<id>``         one doctor read (access log)
``USER#<id>``               ``NOTIF#<ms>#<id>``          an outbox message to the user
``USER#<id>``               ``CALFEED``                  the user's calendar feed token
``USER#<id>``               ``WAIT#<seat>``              a waitlist seat of the patient
``UNIQUE#email#<email>``    ``UNIQUE``                   guard: email taken (→ user id)
``UNIQUE#cpf#<cpf>``        ``UNIQUE``                   guard: CPF taken
``UNIQUE#crm#<uf>#<crm>``   ``UNIQUE``                   guard: CRM/UF taken
``REFRESH#<family>``        ``TOKEN``                    refresh-token family state
``RESET#<sha256 of code>``  ``RESET``                    a password-reset code (user, expiry)
``CALFEED#<sha256>``        ``CALFEED``                  calendar feed token → user
``REVOKED#<kind>#<subj>``   ``REVOKED``                  revocation in force (GSI1 below)
``DOC#<id>``                ``SLOT#<start>#<id>``        a slot (booking)
``DOC#<id>``                ``HOLD#<slot>``              guard: an active appointment holds it
``DOC#<id>``                ``WAIT#<created>#<id>``      a waitlist entry at the doctor
``DOC#<id>``                ``OFF#<start>#<id>``         a time-off range of the doctor
``APPT#<id>``               ``APPT``                     an appointment (booking)
``APPT#<id>``               ``RATING``                   the patient's rating (once)
==========================  ===========================  ======================================

``<start>``, ``<ms>`` and ``<created>`` are epoch ms, zero-padded so they sort as text.
"""

from __future__ import annotations

import hashlib

USER = "USER#"

# --- accounts ---------------------------------------------------------------------------------
PROFILE_SK = "PROFILE"
MFA_SK = "MFA"
SECURITY_EVENT_PREFIX = "SEC#"
UNIQUE_SK = "UNIQUE"
TOKEN_SK = "TOKEN"
RESET_SK = "RESET"
REVOKED_SK = "REVOKED"
REFRESH_PREFIX = "REFRESH#"


def user_pk(user_id: str) -> str:
    """The partition of everything one user owns."""
    return USER + user_id


def user_id_of(pk: str) -> str:
    """The user id of a :func:`user_pk` partition."""
    return pk.removeprefix(USER)


def email_guard(email: str) -> str:
    return f"UNIQUE#email#{email}"


def cpf_guard(cpf: str) -> str:
    return f"UNIQUE#cpf#{cpf}"


def crm_guard(uf: str, crm: str) -> str:
    return f"UNIQUE#crm#{uf}#{crm}"


def security_event_sk(at_ms: int, event_id: str) -> str:
    return f"{SECURITY_EVENT_PREFIX}{at_ms:015d}#{event_id}"


def family_pk(family: str) -> str:
    """A refresh-token family's own item (``TOKEN``)."""
    return REFRESH_PREFIX + family


def family_index_sk(family: str) -> str:
    """A family's entry in its user's partition (erasure revokes every family)."""
    return REFRESH_PREFIX + family


def family_of(index_sk: str) -> str:
    return index_sk.removeprefix(REFRESH_PREFIX)


def reset_pk(code: str) -> str:
    """A password-reset code's item, named by the code's SHA-256 (the code is never stored)."""
    return "RESET#" + hashlib.sha256(code.encode()).hexdigest()


def revoked_pk(kind: str, subject: str) -> str:
    return f"REVOKED#{kind}#{subject}"


# --- booking ----------------------------------------------------------------------------------
SLOT_PREFIX = "SLOT#"
HOLD_PREFIX = "HOLD#"
APPOINTMENT_PREFIX = "APPT#"
"""Of an appointment's own partition, and of its index copies in the participants'."""
APPT_SK = "APPT"
RATING_SK = "RATING"


def doctor_pk(doctor_id: str) -> str:
    return f"DOC#{doctor_id}"


def slot_sk(start: int, slot_id: str) -> str:
    return f"{SLOT_PREFIX}{start:013d}#{slot_id}"


def hold_sk(slot_id: str) -> str:
    return HOLD_PREFIX + slot_id


TIME_OFF_PREFIX = "OFF#"


def off_sk(start: int, time_off_id: str) -> str:
    """A doctor's time-off range, by start."""
    return f"{TIME_OFF_PREFIX}{start:013d}#{time_off_id}"


def appt_pk(appointment_id: str) -> str:
    return APPOINTMENT_PREFIX + appointment_id


def index_sk(start: int, appointment_id: str) -> str:
    """An appointment's copy in a participant's partition, by start."""
    return f"{APPOINTMENT_PREFIX}{start:013d}#{appointment_id}"


def idempotency_sk(key: str) -> str:
    """Keys are client text of up to 200 characters: stored by digest, fixed length."""
    return "IDEM#" + hashlib.sha256(key.encode()).hexdigest()


# --- waitlist ---------------------------------------------------------------------------------
WAITLIST_PREFIX = "WAIT#"


def waitlist_entry_sk(created_at: int, entry_id: str) -> str:
    return f"{WAITLIST_PREFIX}{created_at:013d}#{entry_id}"


def waitlist_seat_sk(seat: int) -> str:
    return f"{WAITLIST_PREFIX}{seat:02d}"


# --- health records ---------------------------------------------------------------------------
RECORD_PREFIX = "REC#"
SHARE_PREFIX = "SHARE#"
ACCESS_PREFIX = "ACCESS#"


def record_sk(record_id: str) -> str:
    return RECORD_PREFIX + record_id


def share_sk(share_id: str) -> str:
    return SHARE_PREFIX + share_id


def access_sk(at_ms: int, entry_id: str) -> str:
    return f"{ACCESS_PREFIX}{at_ms:013d}#{entry_id}"


# --- notifications ----------------------------------------------------------------------------
NOTIFICATION_PREFIX = "NOTIF#"
FEED_SK = "CALFEED"


def notification_sk(created_at: int, item_id: str) -> str:
    return f"{NOTIFICATION_PREFIX}{created_at:013d}#{item_id}"


def feed_lookup_pk(token: str) -> str:
    """A calendar feed token's lookup item, named by the token's SHA-256."""
    return "CALFEED#" + hashlib.sha256(token.encode()).hexdigest()
