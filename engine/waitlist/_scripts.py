"""The waitlist's Lua scripts (``*.lua`` beside this module, registered once per client) and
their replies, each decoded once into a struct named after its script."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from redis.asyncio import Redis


def source(name: str) -> str:
    return (resources.files("engine.waitlist") / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self.add = redis.register_script(source("add"))
        self.forget = redis.register_script(source("forget"))
        self.release = redis.register_script(source("release"))
        self.lapse = redis.register_script(source("lapse"))
        self.rebuild = redis.register_script(source("rebuild"))


Outcome = Literal["held", "opened", "freed", "restored", "already", "not_due"]


class ReleaseReply(msgspec.Struct, frozen=True, array_like=True):
    """release.lua's ``{1, outcome, entry, patient, expires, seq, previous status}``."""

    ok: int
    outcome: Outcome
    entry: str
    patient: str
    expires: int
    seq: int
    previous: str


class ForgetReply(msgspec.Struct, frozen=True, array_like=True):
    """forget.lua's ``{1, "forgotten" | "absent", slot held or ""}``."""

    ok: int
    outcome: Literal["forgotten", "absent"]
    slot: str


def text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def decode(result: Any) -> list[Any]:
    return [text(v) for v in result]
