"""What every part of booking shares: :class:`BookingContext`.

The parts (:class:`~engine.booking._slots.Slots`, :class:`~engine.booking._reserve.Reservations`,
:class:`~engine.booking._decisions.Decisions`, ...) each hold one context and nothing else in
common: the dependencies (settings, store, Redis, accounts, meetings, notices, clock), the Lua
scripts with their typed replies, and the rebuild state (:class:`~engine.booking._rebuild.Rebuild`).

Running a doctor script: every doctor script first checks the doctor's ``hydrated`` marker and
answers ``not_hydrated`` when it is missing (Redis new, flushed or replaced);
:meth:`BookingContext.doctor_eval` then rebuilds that doctor from the store and runs the script
again, so no script ever acts on a doctor whose state was not loaded.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypedDict, TypeVar, Unpack

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import keys
from engine.booking import _store as layout
from engine.booking._meeting import JitsiMeetings, MeetingProvider
from engine.booking._model import Appointment
from engine.booking._notices import BookingNotices
from engine.booking._rebuild import Rebuild
from engine.booking._scripts import Coalescer, Scripts
from engine.errors import Conflict, NotFound, Unavailable
from engine.lua import Reply, decode
from engine.realtime import events
from engine.store import ConditionFailed
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from redis.asyncio import Redis

    from engine.config import Settings
    from engine.lua import Script
    from engine.notifications import Outbox
    from engine.principal import Principal, Role
    from engine.store import Op, Store

log = logging.getLogger("healthmed.booking")

DECISION_LEAD_MS = 15 * 60_000
"""Requests close, and undecided ones expire, this long before the slot starts."""
_ULID_LEN = 26

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=Reply)


def redis_guard(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a Redis failure in a booking call into ``Unavailable``, never an internal error."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except RedisError as exc:
            raise Unavailable("redis failed", code="redis_unavailable") from exc

    return wrapper


class WaitlistPort(Protocol):
    """Where booking sends freed and new slots (:class:`engine.waitlist.WaitlistService`)."""

    async def release(
        self, doctor_id: str, slot_id: str, start: int, end: int, *, mode: Any, ref: str = "",
        undo: bool = False, now: int | None = None, slot_known_open: bool = True,
        hand_over: bool = True,
    ) -> str: ...  # fmt: skip

    async def has_waitlist(self, doctor_id: str) -> bool: ...

    async def fulfilment(self, doctor_id: str, entry_id: str) -> list[Op]: ...

    async def fulfilled(self, doctor_id: str, entry_id: str, start: int, end: int) -> None: ...


class AccountsPort(Protocol):
    """What booking needs from accounts (:class:`engine.accounts.AccountService`)."""

    async def get_doctor(self, doctor_id: str) -> Any: ...

    async def patient_name(self, patient_id: str) -> str | None: ...

    async def rate_doctor(
        self, doctor_id: str, stars: int, extra_ops: Sequence[Op] = ()
    ) -> None: ...


_DOCTOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""Doctor ids are ULIDs; anything else in a slot id is refused before it reaches Redis (it
would otherwise name keys, a rebuild and a log line)."""


def slot_not_found() -> NotFound:
    return NotFound("slot not found", code="slot_not_found")


def appointment_not_found() -> NotFound:
    """The same answer for a missing appointment and someone else's."""
    return NotFound("appointment not found", code="appointment_not_found")


def doctor_of_slot(slot_id: str) -> str:
    """Slot ids are ``<doctor id>.<ULID>``, so a request naming only the slot reaches the
    doctor's keys (hash tag) without a lookup. Malformed ids are ``NotFound``."""
    doctor_id, dot, ulid = slot_id.rpartition(".")
    if (
        not dot
        or len(ulid) != _ULID_LEN
        or not ulid.isalnum()
        or _DOCTOR_ID.fullmatch(doctor_id) is None
    ):
        raise slot_not_found()
    return doctor_id


def transition_error(detail: str) -> Conflict:
    """``Conflict`` ``invalid_transition``: the appointment's state does not allow the step."""
    return Conflict(detail, code="invalid_transition")


def hold_keys(doctor_id: str, slot_id: str) -> list[str]:
    """KEYS of reserve.lua and reopen.lua."""
    return [
        keys.slot(doctor_id, slot_id),
        keys.doctor_open_slots(doctor_id),
        keys.doctor_deadlines(doctor_id),
        keys.doctor_pending(doctor_id),
        keys.doctor_hydrated(doctor_id),
    ]


def lock_keys(doctor_id: str, slot_id: str) -> list[str]:
    """KEYS of lock.lua and unlock.lua."""
    return [
        keys.slot(doctor_id, slot_id),
        keys.doctor_slots(doctor_id),
        keys.doctor_slot_ends(doctor_id),
        keys.doctor_open_slots(doctor_id),
        keys.doctor_hydrated(doctor_id),
    ]


class BookingOptions(TypedDict, total=False):
    """What a booking service may be given besides its four dependencies."""

    meetings: MeetingProvider | None
    """Video meeting links; default Jitsi (``HEALTHMED_MEETING_*``)."""
    clock: Callable[[], int]
    """Epoch ms now; default the wall clock."""
    outbox: Outbox | None
    """Where e-mails and reminders are queued; none: no notices."""


class BookingContext:
    """The dependencies and shared steps of booking's parts (see the module docstring)."""

    def __init__(
        self, settings: Settings, store: Store, redis: Redis, accounts: AccountsPort,
        **options: Unpack[BookingOptions],
    ) -> None:  # fmt: skip
        self.settings = settings
        self.store = store
        self.redis = redis
        self.accounts = accounts
        self.clock: Callable[[], int] = options.get("clock", now_ms)
        """Epoch ms now; an attribute, so a test or the demo seed can move time."""
        self.scripts = Scripts(redis)
        self.run_script = Coalescer(redis)
        self.meetings: MeetingProvider = options.get("meetings") or JitsiMeetings(settings)
        self.notices = BookingNotices(settings, options.get("outbox"), self.meetings)
        self.ttl_ms = settings.request_ttl_seconds * 1000
        self.meeting_ms = settings.meeting_minutes * 60_000
        self.rebuild = Rebuild(self)
        self.waitlist: WaitlistPort | None = None
        """Where freed and new slots go (engine.waitlist, release.lua), once wired; without
        one a freed slot simply reopens (reopen.lua)."""

    # --- scripts ------------------------------------------------------------------------------
    async def _run(
        self, script: Script[Any], keys_: list[str], args: list[Any], *, retry: bool
    ) -> Any:
        """Run a script, its reply as Redis sent it; ``retry`` once after a timeout (only for
        scripts idempotent by id)."""
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                return await self.run_script(script.registered, keys_, args)
            except RedisTimeoutError as exc:
                if attempt + 1 < attempts:
                    log.info("script timed out, retrying (idempotent)")
                    continue
                raise Unavailable("redis did not answer", code="redis_unavailable") from exc
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
        raise AssertionError("unreachable")

    async def eval(
        self, script: Script[R], keys_: list[str], args: list[Any], *, retry: bool = False
    ) -> R:
        """Run a script; its typed reply."""
        return script.decode(await self._run(script, keys_, args, retry=retry))

    async def eval_raw(
        self, script: Script[Any], keys_: list[str], args: list[Any], *, retry: bool = False
    ) -> list[Any]:
        """Run a script; its reply as a list with strings decoded (tests of the scripts'
        contracts; the engine reads :meth:`eval`'s typed replies)."""
        raw: list[Any] = decode(await self._run(script, keys_, args, retry=retry))
        return raw

    async def doctor_eval(
        self,
        script: Script[R],
        doctor_id: str,
        keys_: list[str],
        args: list[Any],
        *,
        retry: bool = False,
    ) -> R:
        """Run a doctor script, rebuilding the doctor first if the script says it is missing."""
        await self.rebuild.check_stale(doctor_id)
        for _ in range(3):
            reply = await self.eval(script, keys_, args, retry=retry)
            if not reply.ok and reply.outcome == "not_hydrated":
                await self.rebuild.doctor(doctor_id)
                continue
            return reply
        raise Unavailable("the doctor's agenda could not be loaded", code="redis_unavailable")

    async def publish(self, pairs: list[tuple[str, bytes]]) -> None:
        """Fire-and-forget: the change is already committed; a lost event is re-read."""
        try:
            await events.publish(self.redis, pairs)
        except Exception:
            log.warning("event publication failed", exc_info=True)

    # --- appointments -------------------------------------------------------------------------
    async def store_transition(self, ops: Sequence[Op]) -> None:
        """Store one step of an appointment, all or nothing: ``Conflict``
        ``invalid_transition`` (nothing written) if it changed meanwhile."""
        try:
            await self.store.transact(ops)
        except ConditionFailed as exc:
            raise transition_error("the appointment changed meanwhile") from exc

    async def load_appointment(self, appointment_id: str) -> tuple[Appointment, int]:
        item = await self.store.get(layout.appt_pk(appointment_id), layout.APPT_SK)
        if item is None:
            raise appointment_not_found()
        return Appointment.from_data(item.data), item.version

    async def participant(
        self, principal: Principal, appointment_id: str
    ) -> tuple[Appointment, int]:
        """The appointment if the caller is one of its two participants; ``NotFound``
        otherwise."""
        appt, version = await self.load_appointment(appointment_id)
        if principal.user_id not in (appt.doctor_id, appt.patient_id):
            raise appointment_not_found()
        return appt, version

    async def own_as(
        self, principal: Principal, appointment_id: str, role: Role
    ) -> tuple[Appointment, int]:
        """The appointment if the caller is its ``role`` participant: the other role is
        ``Forbidden``, anyone else (e.g. another doctor) ``NotFound``."""
        appt, version = await self.participant(principal.require(role), appointment_id)
        owner = appt.doctor_id if role == "doctor" else appt.patient_id
        if owner != principal.user_id:
            raise appointment_not_found()
        return appt, version

    # --- redis side of freeing a slot ---------------------------------------------------------
    async def reopen(
        self, appt: Appointment, now: int, *, undo: bool = False, hand_over: bool = True
    ) -> str:
        """Free the appointment's slot in Redis (held for the next waitlist entry whose window
        covers it, else reopened if it has not started) and drop the patient's hold.
        ``undo``: a reservation rolled back, so a slot it took from its patient's own hold
        returns to that hold. ``hand_over=False``: opened, never held (time off frees the slot
        only to delete it). Idempotent. The script's outcome (release.lua or reopen.lua)."""
        if self.waitlist is not None:
            outcome = await self.waitlist.release(
                appt.doctor_id, appt.slot_id, appt.start, appt.end, mode="appt", ref=appt.id,
                undo=undo, now=now, hand_over=hand_over,
            )  # fmt: skip
            await self.drop_patient_hold(appt)
            return outcome
        channel, frame = events.slot_frame(
            appt.doctor_id, appt.slot_id, appt.start, appt.end, "open", now
        )
        reply = await self.doctor_eval(
            self.scripts.reopen,
            appt.doctor_id,
            hold_keys(appt.doctor_id, appt.slot_id),
            [appt.id, appt.slot_id, now, channel, frame],
            retry=True,
        )
        await self.drop_patient_hold(appt)
        return reply.outcome

    async def drop_patient_hold(self, appt: Appointment) -> None:
        """Its entry in the patient's holds gone; a Redis failure is only logged."""
        try:
            await self.redis.hdel(keys.patient_holds(appt.patient_id), appt.id)
        except RedisError:
            log.warning("could not drop the patient's hold %s", appt.id, exc_info=True)
