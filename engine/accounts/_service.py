"""Accounts: registration, login, token refresh and revocation, profiles, ratings, erasure.

Stored as ``USER#<id>/PROFILE`` (doctors also under ``gsi1pk="DOCTORS"`` for the directory
rebuild) plus one guard item per unique identifier (``UNIQUE#email#<email>``,
``UNIQUE#cpf#<cpf>``, ``UNIQUE#crm#<uf>#<crm>``, each holding the user id), written with the
profile in one transaction conditioned on the guards being absent: of any number of racing
registrations with the same e-mail exactly one lands, whatever the replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.accounts import _window as window
from engine.accounts import validators as v
from engine.accounts._devices import DeviceTokens
from engine.accounts._events import SecurityLog
from engine.accounts._mfa import Mfa
from engine.accounts._passwords import Passwords
from engine.accounts._ratelimit import LoginLimiter, address_group
from engine.accounts._refresh import RefreshReused, RefreshTokens
from engine.accounts._revocations import Revocations, member
from engine.accounts.models import (
    DoctorProfile,
    MfaChallenge,
    PatientProfile,
    TokenPair,
    doctor_profile,
    patient_profile,
    rating_of,
)
from engine.errors import (
    Conflict,
    Invalid,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from engine.fresh import FreshCache
from engine.notifications import Contact
from engine.store import ConditionFailed, Delete, Item, Put
from engine.store import keys as store_keys
from engine.store.keys import cpf_guard, crm_guard, email_guard
from engine.store.keys import user_pk as profile_pk
from engine.timeutil import new_id, now_ms

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from engine.accounts.models import (
        DoctorLogin,
        DoctorPatch,
        DoctorRegistration,
        PatientLogin,
        PatientRegistration,
        Profile,
    )
    from engine.accounts.tokens import AccessTokens
    from engine.config import Settings
    from engine.directory import DirectoryService
    from engine.principal import Principal, Role
    from engine.records import Sealer
    from engine.store import Op, Store

log = logging.getLogger("healthmed.accounts")

RETRIES = 20
"""Optimistic-lock attempts on a profile before giving up (``Unavailable``)."""
DOCTOR_CACHE_SECONDS = 2.0
"""Oldest doctor profile or patient name served from the per-process cache (from the start
of its store read)."""
DOCTOR_CACHE_SIZE = 50_000


def _bad_credentials() -> Unauthenticated:
    """One error, one body, for unknown account, wrong password and erased account alike."""
    return Unauthenticated("wrong credentials", code="invalid_credentials")


def _duplicate(field: str) -> Conflict:
    return Conflict(
        f"an account with this {field} already exists",
        code="duplicate_account",
        errors=[{"key": field, "message": "already registered"}],
    )


def _found(profile: DoctorProfile | None) -> bool:
    """Only profiles found are served from the cache: an id not found is read again."""
    return profile is not None


def _busy() -> Unavailable:
    return Unavailable("the account is being changed concurrently; retry", code="busy")


class AccountService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        tokens: AccessTokens,
        *,
        sealer: Sealer | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._redis = redis
        self._tokens = tokens
        self._passwords = Passwords(settings.hash_concurrency)
        self._limiter = LoginLimiter(
            redis,
            account_limit=settings.login_fail_limit_account,
            address_limit=settings.login_fail_limit_address,
            window_seconds=settings.login_fail_window_seconds,
        )
        self.devices = DeviceTokens(settings.jwt_secret)
        self._refresh = RefreshTokens(store, settings.refresh_ttl_seconds)
        self.revocations = Revocations(redis, durable=self.durable_revocations)
        # One store read per key at a time: when a popular doctor's entry expires, the
        # agenda and booking requests that arrive during its read wait on that read instead
        # of each queueing its own on the store thread.
        self._doctors: FreshCache[str, DoctorProfile | None] = FreshCache(
            DOCTOR_CACHE_SECONDS, DOCTOR_CACHE_SIZE
        )
        self._patient_names: FreshCache[str, str | None] = FreshCache(
            DOCTOR_CACHE_SECONDS, DOCTOR_CACHE_SIZE
        )
        # Imported here: the directory builds on account models, so a module-level import
        # would be circular whichever package is imported first.
        from engine.directory import DirectoryService

        self.directory: DirectoryService = DirectoryService(store, redis)
        """The directory this service writes doctors and ratings to; the engine searches the
        same object, so its search cache drops on this process's own writes."""
        self._sealer = sealer
        self.events = SecurityLog(store)
        self.mfa = Mfa(store, redis, self._sealer_open, self.events)
        from engine.accounts._reset import PasswordResets
        from engine.accounts._security import Security

        self.security = Security(self)
        self.resets = PasswordResets(self)
        """Password reset by e-mail; ``resets.outbox`` is set by the runtime (notifications)."""

    def use_sealer(self, sealer: Sealer) -> None:
        """Seal TOTP secrets with ``sealer`` (the record service's, once its keys are open)."""
        self._sealer = sealer

    def _sealer_open(self) -> Sealer:
        if self._sealer is None:
            raise Unavailable("the key service is not open", code="key_service_unavailable")
        return self._sealer

    # --- registration -----------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        """The Argon2id hash of a valid password, for ``register_*(..., password_hash=)``."""
        return await self._passwords.hash(v.password(password))

    async def _create(
        self,
        data: dict[str, Any],
        guards: list[tuple[str, str]],
        doctor: bool,
        password_hash: str | None,
    ) -> None:
        """Write the profile and its guards in one transaction; ``Conflict`` naming the taken
        field."""
        existing = [await self._store.get(pk, store_keys.UNIQUE_SK) for _, pk in guards]
        for (field, _), item in zip(guards, existing, strict=True):
            if item is not None:  # fast path only; the conditional write below decides
                raise _duplicate(field)
        password = data.pop("password")
        data["password_hash"] = password_hash or await self._passwords.hash(password)
        user_id = data["id"]
        profile = Item(
            pk=profile_pk(user_id),
            sk=store_keys.PROFILE_SK,
            data=data,
            gsi1pk="DOCTORS" if doctor else None,
            gsi1sk=user_id if doctor else None,
        )
        ops: list[Op] = [Put(item=profile, expect="absent")]
        ops += [
            Put(
                item=Item(pk=pk, sk=store_keys.UNIQUE_SK, data={"user_id": user_id}),
                expect="absent",
            )
            for _, pk in guards
        ]
        try:
            await self._store.transact(ops)
        except ConditionFailed as exc:
            if exc.index == 0:
                raise
            raise _duplicate(guards[exc.index - 1][0]) from None

    async def register_doctor(
        self, reg: DoctorRegistration, *, password_hash: str | None = None
    ) -> DoctorProfile:
        """``password_hash``: ``hash_password(reg.password)`` computed once and reused for
        many accounts with one password (seeding); it is not checked against ``reg``."""
        ok = v.check_all(
            {
                "name": reg.name,
                "crm": reg.crm,
                "uf": reg.uf,
                "email": reg.email,
                "password": reg.password,
                "specialty": reg.specialty,
                "price_cents": reg.price_cents,
                "location.lat": reg.location.lat,
                "location.lon": reg.location.lon,
                "city": reg.city,
            }
        )
        data: dict[str, Any] = {
            "id": new_id(),
            "role": "doctor",
            **{k: ok[k] for k in ("name", "crm", "uf", "email", "password", "specialty")},
            "price_cents": ok["price_cents"],
            "lat": ok["location.lat"],
            "lon": ok["location.lon"],
            "city": ok["city"],
            "rating_sum": 0,
            "rating_count": 0,
            "created_at": now_ms(),
        }
        guards = [
            ("email", email_guard(data["email"])),
            ("crm", crm_guard(data["uf"], data["crm"])),
        ]
        await self._create(data, guards, doctor=True, password_hash=password_hash)
        profile = doctor_profile(data, own=True)
        await self._list(profile)
        log.info("doctor registered: %s", data["id"])
        return profile

    async def register_patient(
        self, reg: PatientRegistration, *, password_hash: str | None = None
    ) -> PatientProfile:
        """``password_hash`` as in ``register_doctor``."""
        ok = v.check_all(
            {"name": reg.name, "email": reg.email, "cpf": reg.cpf, "password": reg.password}
        )
        data: dict[str, Any] = {
            "id": new_id(),
            "role": "patient",
            **ok,
            "created_at": now_ms(),
        }
        guards = [("email", email_guard(data["email"])), ("cpf", cpf_guard(data["cpf"]))]
        await self._create(data, guards, doctor=False, password_hash=password_hash)
        log.info("patient registered: %s", data["id"])
        return patient_profile(data, own=True)

    async def _list(self, profile: DoctorProfile) -> None:
        """Show a doctor in the directory. The store already holds the change, so a Redis
        failure here is logged, not raised: the next rebuild lists the doctor."""
        try:
            await self.directory.upsert_doctor(profile)
        except Exception:
            log.warning("directory update failed for doctor %s", profile.id, exc_info=True)

    # --- login and tokens -------------------------------------------------------------------
    async def _user_by_guard(self, guard_pk: str) -> dict[str, Any] | None:
        guard = await self._store.get(guard_pk, store_keys.UNIQUE_SK)
        if guard is None:
            return None
        item = await self._store.get(profile_pk(str(guard.data["user_id"])), store_keys.PROFILE_SK)
        if item is None or item.data.get("erased"):
            return None
        return item.data

    @staticmethod
    def gate(user_id: str, device: str | None) -> str:
        """The login gate an attempt on ``user_id`` is limited in: its trusted ``device``'s
        own, or the one of the account's unknown clients."""
        return f"device:{user_id}:{device}" if device else f"user:{user_id}"

    async def _login(
        self,
        user: dict[str, Any] | None,
        account: str,
        password: str,
        address: str,
        role: Role,
        device_token: str | None = None,
    ) -> TokenPair | MfaChallenge:
        """Reserve an attempt in the account's gate (``RateLimited`` while it is closed: the gate of
        the device ``device_token`` proves logged in before, else the unknown clients'), check
        the address's failures (``RateLimited`` past its limit), verify (a dummy hash for unknown
        accounts), then issue a pair with a device token, or with 2FA active a challenge for
        the code (:meth:`Security.complete_mfa`). A failure keeps its place in the gate and
        counts one on the address; a password right with 2FA on keeps its place until the
        code is right too."""
        device = self.devices.device(device_token, user["id"]) if user is not None else None
        ref = self.gate(user["id"], device) if user is not None else account
        await self._limiter.reserve(ref)
        stored = user.get("password_hash") if user is not None else None
        if len(password) > v.PASSWORD_MAX:
            password = ""  # no stored password is this long; still spend a verify on it
        ok = await self._passwords.verify(
            stored, password, admit=lambda: self._limiter.check_address(address)
        )
        if not ok or user is None or user.get("role") != role:
            await self._limiter.failed(address)
            raise _bad_credentials()
        if await self.mfa.active(user["id"]):
            return await self.mfa.challenge(user["id"], role, device)
        await self._limiter.succeeded(ref)
        return await self.issue_login(user["id"], role, device)

    async def issue_login(self, user_id: str, role: Role, device: str | None) -> TokenPair:
        """The pair a completed login gets, with the token of its device (renewed, or new)."""
        pair = await self._issue(user_id, role)
        token = self.devices.issue(user_id, device)
        return msgspec.structs.replace(pair, device_token=token)

    async def issue_without_password(self, user_id: str, role: Role) -> TokenPair:
        """A token pair for an account that exists, with no password step: for seeding load
        tests and demos only (``engine.seed`` refuses production). Never reachable by HTTP."""
        return await self._issue(user_id, role)

    async def _issue(self, user_id: str, role: Role) -> TokenPair:
        refresh = await self._refresh.start_family(user_id, role)
        access, _ = self._tokens.issue(user_id, role, session=refresh.partition(".")[0])
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=self._tokens.ttl)

    async def login_doctor(self, body: DoctorLogin, address: str) -> TokenPair | MfaChallenge:
        """CRM + UF + password. A malformed CRM or UF is a wrong credential (``Unauthenticated``),
        not an ``Invalid``: login reveals nothing about the rules an account must follow."""
        crm, uf = body.crm.strip(), body.uf.strip().upper()
        try:
            guard = crm_guard(v.uf(uf), v.crm(crm))
        except Invalid:
            guard = None
        user = await self._user_by_guard(guard) if guard else None
        return await self._login(
            user, f"crm:{uf}:{crm}", body.password, address, "doctor", body.device_token
        )

    async def login_patient(self, body: PatientLogin, address: str) -> TokenPair | MfaChallenge:
        """E-mail and/or CPF + password; both given must name the same account (else
        ``Unauthenticated``)."""
        email = (body.email or "").strip().lower()
        cpf_raw = (body.cpf or "").strip()
        if not email and not cpf_raw:
            raise Invalid(
                "email or cpf is required",
                code="identifier_required",
                errors=[{"key": "email", "message": "email or cpf is required"}],
            )
        try:
            cpf = v.cpf(cpf_raw) if cpf_raw else ""
        except Invalid:
            cpf = "invalid"
        found: list[dict[str, Any] | None] = []
        if email:
            found.append(await self._user_by_guard(email_guard(email)))
        if cpf:
            found.append(None if cpf == "invalid" else await self._user_by_guard(cpf_guard(cpf)))
        ids = {u["id"] if u else None for u in found}
        user = found[0] if len(ids) == 1 else None
        account = f"email:{email}" if email else f"cpf:{cpf_raw}"
        return await self._login(
            user, account, body.password, address, "patient", body.device_token
        )

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token; a spent one revokes its whole family (``Unauthenticated``) and
        every access token of its user issued until now (whoever copied the refresh token may hold
        those too; the user's other logins simply refresh)."""
        try:
            user_id, role, next_token = await self._refresh.rotate(refresh_token)
        except RefreshReused as reused:
            await self.revoke_access_tokens(reused.user_id)
            raise
        access, _ = self._tokens.issue(user_id, role, session=next_token.partition(".")[0])
        return TokenPair(access_token=access, refresh_token=next_token, expires_in=self._tokens.ttl)

    async def logout(self, principal: Principal, refresh_token: str) -> None:
        """Revoke the login's refresh family (if it is the caller's) and this access token."""
        await self._refresh.revoke_token(refresh_token, principal.user_id)
        await self._revoke("jti", principal.jti, "1", principal.expires_at * 1000)

    @staticmethod
    def _revocation_key(kind: str, subject: str) -> str:
        if kind == "jti":
            return keys.revoked_access(subject)
        if kind == "sid":
            return keys.revoked_session(subject)
        return keys.user_revoked_before(subject)

    async def _revoke(self, kind: str, subject: str, value: str, until_ms: int) -> None:
        """Record a revocation durably, then in Redis and every process's memory.

        The store copy lets a flushed or replaced Redis get it back on a rebuild
        (:meth:`restore_revocations`), so a revoked token never comes back to life.
        """
        until_ms = max(until_ms, now_ms()) + 1000
        await self._store.put(
            Item(
                pk=store_keys.revoked_pk(kind, subject),
                sk=store_keys.REVOKED_SK,
                data={"kind": kind, "subject": subject, "value": value},
                gsi1pk="REVOCATIONS",
                gsi1sk=f"{until_ms:015d}",
            )
        )
        try:
            await self._redis.set(self._revocation_key(kind, subject), value, pxat=until_ms)
            await self.revocations.publish(member(kind, subject, value), until_ms)
        except RedisError:
            # Degraded mode: stored, so every process finds it (they read the store while
            # their copy is not live, and reload it from the store when it is live again).
            self.revocations.add(member(kind, subject, value), until_ms)
            log.warning("revocation stored, but redis is unreachable")

    async def durable_revocations(self) -> list[tuple[str, int]]:
        """Every revocation still in force in the store, as ``(member, until ms)``."""
        live = await self._store.query_index("REVOCATIONS", start=f"{now_ms():015d}")
        return [
            (member(*(str(item.data[k]) for k in ("kind", "subject", "value"))),
             int(item.gsi1sk or 0))
            for item in live
        ]  # fmt: skip

    async def revoke_sessions(self, user_id: str, *, keep: str = "") -> None:
        """Every login of ``user_id`` but ``keep`` (a refresh family) ends: its refresh
        family is revoked and its access tokens stop working; with no ``keep``, every access
        token issued before this second too (a token carrying no session included).

        ``iat`` counts whole seconds, so "before now" would also refuse a login made in the
        rest of this second (right after a reset, say); this second's earlier tokens all
        carry a session (``sid``), and that session's revocation ends them."""
        now = now_ms()
        until = now + (self._settings.access_ttl_seconds + 60) * 1000
        for entry in await self._store.query(profile_pk(user_id), prefix=store_keys.REFRESH_PREFIX):
            family = store_keys.family_of(entry.sk)
            if family == keep:
                continue
            await self._refresh.revoke(family)
            await self._revoke("sid", family, "1", until)
        if not keep:
            await self._revoke("before", user_id, str(now // 1000 * 1000 - 1), until)

    async def revoke_access_tokens(self, user_id: str) -> None:
        """Every access token of ``user_id`` issued until now stops working."""
        now = now_ms()
        until = now + (self._settings.access_ttl_seconds + 60) * 1000
        await self._revoke("before", user_id, str(now), until)

    async def restore_revocations(self) -> int:
        """Put every revocation still in force back into Redis; forget expired ones."""
        now = now_ms()
        for item in await self._store.query_index("REVOCATIONS", end=f"{now:015d}"):
            await self._store.delete(item.pk, item.sk)
        live = await self._store.query_index("REVOCATIONS", start=f"{now:015d}")
        for item in live:
            kind, subject, value = (str(item.data[k]) for k in ("kind", "subject", "value"))
            until = int(item.gsi1sk or 0)
            await self._redis.set(self._revocation_key(kind, subject), value, pxat=until)
            await self.revocations.publish(member(kind, subject, value), until)
        return len(live)

    async def check_not_revoked(self, principal: Principal) -> None:
        """The token's jti is not revoked and its user was not revoked (erasure, refresh
        reuse) after the token's ``iat``. From memory while the process follows revocations
        (:mod:`engine.accounts._revocations`), else one Redis round trip; with Redis down
        (degraded mode) or not rebuilt yet (its ``hydrated`` marker missing: a revocation
        would be missing too), the store's durable copy of the same two entries."""
        if self.revocations.live:
            self.revocations.check(principal)
            return
        try:  # keys of four cluster slots: a pipeline, not MGET
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(keys.revoked_access(principal.jti))
                pipe.get(keys.user_revoked_before(principal.user_id))
                pipe.get(keys.revoked_session(principal.session or "-"))
                pipe.get(keys.hydrated())
                denied, before, session, built = await pipe.execute()
        except RedisError:
            built = None
        if built is None:  # Redis down, or back empty and not rebuilt yet: the store knows
            denied, before, session = await self._revoked_in_store(principal)
        if denied is not None or (principal.session and session is not None):
            raise Unauthenticated("token revoked", code="token_revoked")
        if before is not None and principal.issued_at * 1000 <= int(before):
            raise Unauthenticated("token revoked", code="token_revoked")

    async def _revoked_in_store(
        self, principal: Principal
    ) -> tuple[str | None, str | None, str | None]:
        """The token's jti, its user's ``before`` and its session's entries, from the store."""
        now = now_ms()
        items = await asyncio.gather(
            self._store.get(store_keys.revoked_pk("jti", principal.jti), store_keys.REVOKED_SK),
            self._store.get(
                store_keys.revoked_pk("before", principal.user_id), store_keys.REVOKED_SK
            ),
            self._store.get(
                store_keys.revoked_pk("sid", principal.session or "-"), store_keys.REVOKED_SK
            ),
        )
        jti, before, session = (
            str(item.data["value"]) if item and int(item.gsi1sk or 0) > now else None
            for item in items
        )
        return jti, before, session

    async def check_address_rate(self, address: str) -> None:
        """Count a registration or reset request from ``address``; ``RateLimited``
        ``too_many_requests`` past ``HEALTHMED_REGISTRATION_LIMIT_ADDRESS`` a window (generous: a
        proxy or a test client registering a thousand accounts a minute never reaches the default).
        Checked before any hashing, so a flood costs a Redis round trip each, not an Argon2 hash."""
        limit = self._settings.registration_limit_address
        seen, wait = await window.count(
            self._redis,
            keys.registrations_address(address_group(address)),
            self._settings.registration_window_seconds,
        )
        if seen > limit:
            raise RateLimited(
                "too many registrations or reset requests from this address; try again later",
                code="too_many_requests",
                retry_after=wait,
            )

    # --- password reset ---------------------------------------------------------------------
    async def find_for_reset(
        self, email: str | None, crm: str | None, uf: str | None
    ) -> dict[str, Any] | None:
        """The live account an e-mail or a CRM/UF names, or None (a malformed one included)."""
        try:
            if email:
                return await self._user_by_guard(email_guard(v.email(email)))
            if crm and uf:
                return await self._user_by_guard(crm_guard(v.uf(uf.strip().upper()), v.crm(crm)))
        except Invalid:
            return None
        return None

    async def allow_reset(self, user_id: str, per_hour: int) -> bool:
        """Count one reset e-mail for ``user_id``; False past ``per_hour`` in the hour."""
        sent, _ = await window.count(self._redis, keys.reset_requests(user_id), 3600)
        return sent <= per_hour

    # --- profiles ---------------------------------------------------------------------------
    async def _profile_item(self, user_id: str) -> Item | None:
        item = await self._store.get(profile_pk(user_id), store_keys.PROFILE_SK)
        if item is None or item.data.get("erased"):
            return None
        return item

    async def get_profile(self, principal: Principal) -> Profile:
        """The caller's own profile (with e-mail, CPF or CRM). ``Unauthenticated`` if the account is
        gone."""
        item = await self._profile_item(principal.user_id)
        if item is None:
            raise Unauthenticated("the account no longer exists", code="account_erased")
        if item.data.get("role") == "doctor":
            return doctor_profile(item.data, own=True)
        return patient_profile(item.data, own=True)

    async def contact(self, user_id: str) -> Contact | None:
        """Name and e-mail of a live account (where its notifications go); None if unknown
        or erased."""
        item = await self._profile_item(user_id)
        if item is None or not item.data.get("email"):
            return None
        return Contact(name=str(item.data.get("name", "")), email=str(item.data["email"]))

    async def get_doctor(self, doctor_id: str) -> DoctorProfile:
        """A doctor's public profile; ``NotFound`` for unknown, erased or non-doctor ids.

        Remembered per process for ``DOCTOR_CACHE_SECONDS``: every booking and agenda read
        needs the doctor's price, and one popular doctor is read thousands of times a minute.
        A change made through this process is seen at once; through another replica, within
        that time (a price change reaches bookings there at most 2 s later).
        """
        profile = await self._doctors.get(doctor_id, lambda: self._read_doctor(doctor_id), _found)
        if profile is None:
            raise NotFound("doctor not found", code="doctor_not_found")
        return profile

    async def _read_doctor(self, doctor_id: str) -> DoctorProfile | None:
        item = await self._profile_item(doctor_id)
        if item is None or item.data.get("role") != "doctor":
            return None
        return doctor_profile(item.data)

    async def patient_name(self, patient_id: str) -> str | None:
        """A patient's name for the doctor's view of an appointment (never more than the name);
        ``None`` for unknown or erased patients. Remembered like doctors' profiles."""
        return await self._patient_names.get(patient_id, lambda: self._read_name(patient_id))

    async def _read_name(self, patient_id: str) -> str | None:
        item = await self._profile_item(patient_id)
        if item is None or item.data.get("role") != "patient":
            return None
        return str(item.data["name"])

    async def update_doctor(self, principal: Principal, patch: DoctorPatch) -> DoctorProfile:
        """PATCH /v1/me for doctors (patients: ``Forbidden``). Optimistic lock on the profile."""
        principal.require("doctor")
        sent = {
            k: getattr(patch, k)
            for k in ("name", "price_cents", "specialty", "city", "timezone")
            if getattr(patch, k) is not msgspec.UNSET
        }
        if patch.location is not msgspec.UNSET:
            sent["location.lat"] = patch.location.lat
            sent["location.lon"] = patch.location.lon
        changes = v.check_all(sent)
        if "location.lat" in changes:
            changes["lat"] = changes.pop("location.lat")
            changes["lon"] = changes.pop("location.lon")
        for _ in range(RETRIES):
            item = await self._profile_item(principal.user_id)
            if item is None:
                raise Unauthenticated("the account no longer exists", code="account_erased")
            data = {**item.data, **changes}
            if changes:
                try:
                    await self._store.put(msgspec.structs.replace(item, data=data), item.version)
                except ConditionFailed:
                    continue
            profile = doctor_profile(data, own=True)
            if changes:
                self._doctors.forget(principal.user_id)
                await self._list(profile)
            return profile
        raise _busy()

    async def rate_doctor(self, doctor_id: str, stars: int, extra_ops: Sequence[Op] = ()) -> None:
        """Add ``stars`` (1-5) to a doctor's rating in the same store transaction as
        ``extra_ops`` (the caller's rating item and its conditions). Atomic: both land or
        neither. Retried only when the profile changed under us; a failing ``extra_ops``
        condition propagates as ``ConditionFailed`` with its index."""
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise Invalid("stars must be an integer from 1 to 5", code="invalid_stars")
        for _ in range(RETRIES):
            item = await self._profile_item(doctor_id)
            if item is None or item.data.get("role") != "doctor":
                raise NotFound("doctor not found", code="doctor_not_found")
            data = {
                **item.data,
                "rating_sum": int(item.data.get("rating_sum", 0)) + stars,
                "rating_count": int(item.data.get("rating_count", 0)) + 1,
            }
            put = Put(item=msgspec.structs.replace(item, data=data), expect=item.version)
            try:
                await self._store.transact([*extra_ops, put])
            except ConditionFailed as exc:
                if exc.index == len(extra_ops):
                    continue
                raise
            self._doctors.forget(doctor_id)
            rating = rating_of(data)
            try:
                await self.directory.update_rating(doctor_id, rating.average, rating.count)
            except Exception:
                log.warning("directory rating update failed for %s", doctor_id, exc_info=True)
            return
        raise _busy()

    # --- privacy (LGPD) ---------------------------------------------------------------------
    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """The profile, whether 2FA is on, and the security events; never a secret or hash."""
        profile = await self.get_profile(principal)
        events = await self.events.list(principal.user_id)
        return {
            "profile": msgspec.to_builtins(profile),
            "mfa": {"active": await self.mfa.active(principal.user_id)},
            "security_events": msgspec.to_builtins(events),
        }

    async def erase_user(self, principal: Principal) -> None:
        """Revoke every refresh family, anonymise the profile, free the e-mail/CPF/CRM, drop
        the doctor from the directory and reject access tokens issued until now. Idempotent;
        the account can no longer log in (``Unauthenticated`` like any wrong credential)."""
        user_id = principal.user_id
        self._doctors.forget(user_id)
        await self._refresh.revoke_all(user_id)
        for _ in range(RETRIES):
            item = await self._store.get(profile_pk(user_id), store_keys.PROFILE_SK)
            if item is None or item.data.get("erased"):
                break
            data = item.data
            guards = [email_guard(data["email"])]
            if data.get("cpf"):
                guards.append(cpf_guard(data["cpf"]))
            if data.get("crm"):
                guards.append(crm_guard(data["uf"], data["crm"]))
            anonymised = {
                "id": user_id,
                "role": data.get("role"),
                "name": "erased",
                "erased": True,
                "erased_at": now_ms(),
                "created_at": data.get("created_at"),
            }
            ops: list[Op] = [
                Put(item=Item(pk=item.pk, sk=item.sk, data=anonymised), expect=item.version),
                *(Delete(pk=pk, sk=store_keys.UNIQUE_SK) for pk in guards),
            ]
            try:
                await self._store.transact(ops)
            except ConditionFailed:
                continue
            break
        else:
            raise _busy()
        await self.revoke_access_tokens(user_id)
        await self.mfa.erase(user_id)
        await self.events.erase(user_id)
        self._doctors.forget(user_id)
        self._patient_names.forget(user_id)
        await self.directory.remove_doctor(user_id)
        log.info("account erased: %s", user_id)
