"""Real-time events: the envelope every event is published in, and the per-process hub that
relays them from Redis pub/sub to local websocket subscribers."""

from __future__ import annotations

from engine.realtime.events import (
    CHANNEL_PATTERN,
    CHANNEL_PREFIX,
    EventFrame,
    channel,
    doctor_appointments_topic,
    doctor_slots_topic,
    frames,
    patient_appointments_topic,
    publish,
)
from engine.realtime.hub import DropReason, Hub, Subscriber

__all__ = [
    "CHANNEL_PATTERN",
    "CHANNEL_PREFIX",
    "DropReason",
    "EventFrame",
    "Hub",
    "Subscriber",
    "channel",
    "doctor_appointments_topic",
    "doctor_slots_topic",
    "frames",
    "patient_appointments_topic",
    "publish",
]
