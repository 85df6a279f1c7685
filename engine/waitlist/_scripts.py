"""The waitlist's Lua scripts (the ``*.lua`` files beside this module, loaded by
:mod:`engine.lua`), the type of each one's reply, and release.lua's closed choices.

A reply type is named after its script and lists what the script's header says it returns
after ``{ok, outcome}``; a refusal returns fewer values, so the further fields have defaults.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from engine.lua import Reply, load
from engine.sweep_index import sweep_script

if TYPE_CHECKING:
    from redis.asyncio import Redis

_PACKAGE = "engine.waitlist"


class Freed(StrEnum):
    """What frees the slot release.lua hands over or opens (its ``mode``)."""

    APPOINTMENT = "appt"
    """An appointment lets it go (cancel, refuse, expiry, a reservation rolled back)."""
    HOLD = "hold"
    """A waitlist hold ends (declined, deleted, lapsed)."""
    SLOT = "slot"
    """A new slot, or an edited open one."""


class How(StrEnum):
    """How release.lua treats the slot it frees (its ``flag``)."""

    HAND_OVER = ""
    """To the earliest covering entry, else open."""
    PASS = "pass"
    """The ending hold's entry declined or let it lapse: never offered to it again."""
    UNDO = "undo"
    """A reservation rolled back: a slot it took from its patient's hold returns to it."""
    OPEN = "open"
    """Opened to everyone, never held (time off is about to delete it)."""


class AddReply(Reply, array_like=True, frozen=True):
    seq: int = 0
    """``added`` or ``already``: the entry's FCFS seq."""
    other: str = ""
    """``already_waiting``: the patient's entry it overlaps."""


class ForgetReply(Reply, array_like=True, frozen=True):
    slot: str = ""
    """The slot the entry held ("" if none): the caller passes it on."""


class ReleaseReply(Reply, array_like=True, frozen=True):
    start: int = 0
    """``moved`` and ``held``: the slot's start as Redis has it (ms)."""
    end: int = 0
    entry: str = ""
    """``held``: the entry holding the slot now."""
    expires: int = 0
    """``held``: the hold's expiry (ms)."""
    seq: int = 0
    """``held``: the holder's FCFS seq (its store key)."""
    previous: str = ""
    """``held``: the slot's status before (``open``: it had been published open)."""


class RebuildReply(Reply, array_like=True, frozen=True):
    pass


class Scripts:
    """Every waitlist script, registered on one Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.add = load(redis, _PACKAGE, "add", AddReply)
        self.forget = load(redis, _PACKAGE, "forget", ForgetReply)
        self.release = load(redis, _PACKAGE, "release", ReleaseReply)
        self.lapse = sweep_script(redis)
        """Claims lapsed holds (``engine/sweep.lua``, as booking's expiry sweep)."""
        self.rebuild = load(redis, _PACKAGE, "rebuild", RebuildReply)
