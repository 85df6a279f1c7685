"""The booking Lua scripts, loaded from the ``*.lua`` files beside this module and registered
once per Redis client (EVALSHA, reloaded on NOSCRIPT by redis-py)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

NAMES = (
    "create",
    "commit",
    "lock",
    "unlock",
    "reserve",
    "reopen",
    "accept",
    "claim",
    "sweep",
    "rebuild",
)


def source(name: str) -> str:
    return (resources.files("engine.booking") / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self.create = redis.register_script(source("create"))
        self.commit = redis.register_script(source("commit"))
        self.lock = redis.register_script(source("lock"))
        self.unlock = redis.register_script(source("unlock"))
        self.reserve = redis.register_script(source("reserve"))
        self.reopen = redis.register_script(source("reopen"))
        self.accept = redis.register_script(source("accept"))
        self.claim = redis.register_script(source("claim"))
        self.sweep = redis.register_script(source("sweep"))
        self.rebuild = redis.register_script(source("rebuild"))


def text(value: Any) -> str:
    """A script's string result (bytes from a raw client, str from a decoding one)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def decode(result: Any) -> list[Any]:
    """A script result with its bulk strings decoded; integers are left as they are."""
    return [text(v) if isinstance(v, bytes) else v for v in result]
