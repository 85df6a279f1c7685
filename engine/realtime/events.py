"""Event envelope and publishing.

An event is published on the Redis channel ``hm:t:<topic>`` and its payload is already the exact
frame a websocket client receives::

    {"type": "event", "topic": "...", "event": "slot.updated", "data": {...}, "at": "...Z"}

so a gateway replica (one ``PSUBSCRIBE hm:t:*`` per process) forwards the bytes to the topic's
local subscribers without decoding or re-encoding them. Lua scripts publish frames they receive
pre-encoded in ARGV, so an event leaves Redis only if the change it describes happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from engine.timeutil import now_ms, to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

CHANNEL_PREFIX = "hm:t:"
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"

_encoder = msgspec.json.Encoder()


class EventFrame(msgspec.Struct, kw_only=True, tag="event", tag_field="type"):
    topic: str
    event: str
    data: Any
    at: str


def channel(topic: str) -> str:
    return CHANNEL_PREFIX + topic


def doctor_slots_topic(doctor_id: str) -> str:
    return f"doctor.{doctor_id}.slots"


def doctor_appointments_topic(doctor_id: str) -> str:
    return f"doctor.{doctor_id}.appointments"


def patient_appointments_topic(patient_id: str) -> str:
    return f"patient.{patient_id}.appointments"


def frames(
    topics: list[str], event: str, data: Any, at_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """(channel, payload) pairs for one event sent to several topics."""
    at = to_rfc3339(now_ms() if at_ms is None else at_ms)
    return [
        (channel(t), _encoder.encode(EventFrame(topic=t, event=event, data=data, at=at)))
        for t in topics
    ]


async def publish(redis: Redis, pairs: list[tuple[str, bytes]]) -> None:
    """Publish frames in one round trip. Publishing is fire-and-forget: a lost event is
    recovered by the client re-reading the agenda or appointment (see the websocket docs)."""
    if not pairs:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for ch, payload in pairs:
            # PUBLISH as a command: redis-py's cluster pipeline blocks its publish() method,
            # not the command; classic PUBLISH reaches subscribers on every cluster node.
            pipe.execute_command("PUBLISH", ch, payload)
        await pipe.execute()


class FrameTemplate:
    """One event's frame encoded once, with holes in it filled later, some by a Lua script
    (a script cannot encode JSON; it joins the pieces around values it holds).

    The frame is encoded with markers in the ``holes`` (keys of ``data``, in the order the
    frame has them) and in ``at``, then cut at the markers: ``pieces`` has one piece more than
    holes, ``at`` being the last hole. The values filled in must not need JSON escaping
    (RFC 3339 times, ids).
    """

    __slots__ = ("channel", "pieces")

    def __init__(self, topic: str, event: str, data: dict[str, Any], holes: Sequence[str]):
        names = [*holes, "at"]
        marked = {**data, **{name: f"@@{name}@@" for name in holes}}
        rest = _encoder.encode(EventFrame(topic=topic, event=event, data=marked, at="@@at@@"))
        pieces: list[bytes] = []
        for name in names:
            piece, found, rest = rest.partition(f"@@{name}@@".encode())
            if not found:
                raise ValueError(f"hole {name!r} is not in the frame (or out of order)")
            pieces.append(piece)
        pieces.append(rest)
        self.channel = channel(topic)
        self.pieces: tuple[bytes, ...] = tuple(pieces)

    def fill(self, *values: str) -> bytes:
        """The frame with every hole filled, ``at`` last."""
        if len(values) + 1 != len(self.pieces):
            raise ValueError("one value per hole")
        out = self.pieces[0]
        for value, piece in zip(values, self.pieces[1:], strict=True):
            out += value.encode() + piece
        return out

    def for_script(self, at_ms: int) -> list[bytes]:
        """The pieces a script joins around the holes it fills (every hole but ``at``), with
        ``at`` filled in here."""
        *first, before_at, after_at = self.pieces
        return [*first, before_at + to_rfc3339(at_ms).encode() + after_at]


SLOT_UPDATED = "slot.updated"


def slot_updated_template(doctor_id: str, slot_id: str, status: str) -> FrameTemplate:
    """``slot.updated`` of a slot, its ``start`` and ``end`` left as holes (reserve.lua fills
    them from the slot it holds)."""
    data = {"slot_id": slot_id, "doctor_id": doctor_id, "start": "", "end": "", "status": status}
    return FrameTemplate(doctor_slots_topic(doctor_id), SLOT_UPDATED, data, ("start", "end"))


def slot_frame(
    doctor_id: str, slot_id: str, start: int, end: int, status: str, at_ms: int
) -> tuple[str, bytes]:
    """(channel, payload) of ``slot.updated`` for a slot now ``status``."""
    template = slot_updated_template(doctor_id, slot_id, status)
    return template.channel, template.fill(to_rfc3339(start), to_rfc3339(end), to_rfc3339(at_ms))
