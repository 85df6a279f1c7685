"""Every Redis key name, built in one place.

All keys of one doctor share the Redis Cluster hash tag ``{d:<doctor_id>}``, so each booking
script touches a single cluster slot; keys of one patient share ``{p:<patient_id>}``. The
directory's keys share ``{dir}``: they are small and read-mostly, and one slot lets the rating
script update the card and both rating indexes atomically. Other keys that belong to no doctor
or patient (rate limits, revocations) are touched by plain commands only, never by a multi-key
script.
"""

from __future__ import annotations

PREFIX = "hm"


def doctor_tag(doctor_id: str) -> str:
    return "{d:" + doctor_id + "}"


def patient_tag(patient_id: str) -> str:
    return "{p:" + patient_id + "}"


# --- booking (per doctor) -------------------------------------------------------------------
def slot(doctor_id: str, slot_id: str) -> str:
    """Hash of one slot: start, end (ms), status, appointment id, patient id."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:slot:{slot_id}"


def doctor_slots(doctor_id: str) -> str:
    """Sorted set of the doctor's slot ids scored by start (ms)."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:slots"


def doctor_open_slots(doctor_id: str) -> str:
    """Sorted set of the doctor's ``open`` slot ids scored by start (ms): next open slot."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:open"


def doctor_hydrated(doctor_id: str) -> str:
    """Marker: this doctor's slots were loaded from the store into this Redis."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:hydrated"


# --- booking (scripts and sweeper) ---------------------------------------------------------
def doctor_slot_ends(doctor_id: str) -> str:
    """Hash slot id -> end (ms), plus ``~<id>`` shadows of pending edits: overlap checks."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:ends"


def doctor_deadlines(doctor_id: str) -> str:
    """Sorted set of the doctor's undecided appointment ids scored by decision deadline (ms)."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:deadlines"


def doctor_pending(doctor_id: str) -> str:
    """Hash appointment id -> slot id of the doctor's undecided requests."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:pending"


def patient_holds(patient_id: str) -> str:
    """Hash appointment id -> ``start:end`` (ms) of the patient's active appointments.

    Field ``~h`` marks it as loaded from the store (absent after a flush)."""
    return f"{PREFIX}:{patient_tag(patient_id)}:holds"


def patient_idempotency(patient_id: str, key: str) -> str:
    """Appointment id bound to an ``Idempotency-Key`` of this patient."""
    return f"{PREFIX}:{patient_tag(patient_id)}:idem:{key}"


def patient_idempotent_response(patient_id: str, key: str) -> str:
    """The first response (status and body) given for an ``Idempotency-Key``."""
    return f"{PREFIX}:{patient_tag(patient_id)}:idem-resp:{key}"


def sweep_index() -> str:
    """Sorted set of doctor ids scored by their earliest pending deadline (ms), for the sweeper.

    No hash tag: touched by plain commands only."""
    return f"{PREFIX}:sweep"


# --- waitlist (per doctor, same hash tag as the doctor's slots: one release script) -------
def waitlist(doctor_id: str) -> str:
    """Hash entry id -> ``from:to:patient:seat`` (ms) of the doctor's active entries."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl"


def waitlist_order(doctor_id: str) -> str:
    """Sorted set entry id -> creation (ms): first come, first served; position = rank + 1."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:order"


def waitlist_day(doctor_id: str, day: int) -> str:
    """Sorted set entry id -> creation (ms) of the entries whose window meets UTC day ``day``
    (days since the epoch): the window index release.lua scans."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:day:{day}"


def waitlist_patient(doctor_id: str, patient_id: str) -> str:
    """Hash entry id -> ``from:to`` of one patient's entries at this doctor (overlap check)."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:p:{patient_id}"


def waitlist_offers(doctor_id: str) -> str:
    """Hash entry id -> slot id held for it (at most one per entry)."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:offers"


def waitlist_holds(doctor_id: str) -> str:
    """Sorted set entry id -> hold expiry (ms): the lapse sweep."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:holds"


def waitlist_passed(doctor_id: str, slot_id: str) -> str:
    """Set of entries that declined or let lapse this slot (never offered it again)."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:passed:{slot_id}"


def waitlist_hydrated(doctor_id: str) -> str:
    """Marker: this doctor's waitlist was loaded from the store into this Redis."""
    return f"{PREFIX}:{doctor_tag(doctor_id)}:wl:hydrated"


def waitlist_sweep_index() -> str:
    """Sorted set of doctor ids scored by their earliest hold expiry (ms). No hash tag."""
    return f"{PREFIX}:wl-sweep"


# --- directory (one hash tag: ``{dir}``) -----------------------------------------------------
_DIR = PREFIX + ":{dir}"


def directory_geo(specialty: str) -> str:
    return f"{_DIR}:geo:{specialty}"


def directory_geo_all() -> str:
    return f"{_DIR}:geo:*all*"


def directory_rating() -> str:
    """Sorted set of doctor ids by average rating (all specialties)."""
    return f"{_DIR}:rating"


def directory_rating_by(specialty: str) -> str:
    return f"{_DIR}:rating:{specialty}"


def directory_doctor(doctor_id: str) -> str:
    """Hash of a doctor's public card, as the search returns it."""
    return f"{_DIR}:doc:{doctor_id}"


def directory_specialties() -> str:
    """Sorted set: specialty slug scored by its number of doctors."""
    return f"{_DIR}:specialties"


def hydrated() -> str:
    """Marker set once this Redis holds everything rebuilt from the store."""
    return f"{PREFIX}:hydrated"


# --- accounts -------------------------------------------------------------------------------
def login_failures_account(account: str) -> str:
    return f"{PREFIX}:rl:login:acct:{account}"


def login_failures_address(address: str) -> str:
    return f"{PREFIX}:rl:login:addr:{address}"


def revoked_access(jti: str) -> str:
    """Denylist entry of an access token revoked before its expiry (logout, erasure)."""
    return f"{PREFIX}:revoked:{jti}"


def revocations() -> str:
    """Sorted set of revocations in force (score: until, ms), and the channel announcing them."""
    return f"{PREFIX}:revocations"


def user_revoked_before(user_id: str) -> str:
    """Access tokens of this user issued before this time (ms) are no longer valid."""
    return f"{PREFIX}:revoked-before:{user_id}"


def mfa_challenge(token_hash: str) -> str:
    """The user and role of an unspent ``mfa_token`` (second login step), by its SHA-256."""
    return f"{PREFIX}:mfa:{token_hash}"


def revoked_session(session: str) -> str:
    """Denylist entry of every access token of one login (refresh family), e.g. after a
    password change revoked the user's other sessions."""
    return f"{PREFIX}:revoked-session:{session}"


def reset_requests(user_id: str) -> str:
    """Password-reset e-mails sent to one account in the current hour."""
    return f"{PREFIX}:rl:reset:{user_id}"


def registrations_address(address: str) -> str:
    """Registrations from one client address in the current window."""
    return f"{PREFIX}:rl:register:{address}"
