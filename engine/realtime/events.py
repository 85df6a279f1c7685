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
