"""The one loader of the engine's Lua scripts (booking, directory, waitlist, the sweeps).

A script is a ``<name>.lua`` file in its package, registered once per Redis client (EVALSHA,
reloaded on NOSCRIPT by redis-py), and its reply is decoded into a ``msgspec.Struct``
(``array_like=True``) named after it, so callers read fields by name, never by position::

    class MoveReply(Reply, array_like=True): ...
    move = load(redis, "engine.directory", "move", MoveReply)
    reply = await move.run(keys=[...], args=[...])
    if reply.ok: ...

Every script answers ``{ok, outcome, ...}`` (``ok`` 1 or 0, ``outcome`` a word); a reply type
adds the script's further values as fields with defaults, since a refusal returns fewer.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


class Reply(msgspec.Struct, array_like=True, frozen=True):
    """What every script answers first: success (1) or refusal (0), and the outcome's word."""

    ok: int
    outcome: str


R = TypeVar("R", bound=Reply)


def source(package: str, name: str) -> str:
    """The text of ``<name>.lua`` in ``package``."""
    return (resources.files(package) / f"{name}.lua").read_text(encoding="utf-8")


def text(value: Any) -> str:
    """A script's string value (bytes from a raw client, str from a decoding one)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def decode(value: Any) -> Any:
    """A script reply with its bulk strings decoded, nested arrays included; integers are left
    as they are."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class Script(Generic[R]):
    """One registered script and the type of its reply."""

    __slots__ = ("name", "registered", "reply")

    def __init__(self, redis: Redis, package: str, name: str, reply: type[R]) -> None:
        self.name = name
        self.registered: AsyncScript = redis.register_script(source(package, name))
        self.reply = reply

    def decode(self, raw: Any) -> R:
        """The raw reply as this script's reply type."""
        return msgspec.convert(decode(raw), self.reply)

    async def run(self, keys: list[Any], args: list[Any]) -> R:
        """Run the script alone (EVALSHA) and decode its reply."""
        return self.decode(await self.registered(keys=keys, args=args))

    def __repr__(self) -> str:
        return f"Script({self.name!r})"


def load(redis: Redis, package: str, name: str, reply: type[R]) -> Script[R]:
    """Register ``<name>.lua`` of ``package`` on ``redis``, its replies typed as ``reply``."""
    return Script(redis, package, name, reply)
