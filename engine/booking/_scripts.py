"""The booking Lua scripts (the ``*.lua`` files beside this module, loaded by
:mod:`engine.lua`), the type of each one's reply, and the coalescer that sends the calls made
at the same moment as one pipeline.

A reply type is named after its script and lists what the script's header says it returns
after ``{ok, outcome}``; a refusal returns fewer values, so the further fields have defaults.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from engine.lua import Reply, Script, load
from engine.sweep_index import sweep_script

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

_PACKAGE = "engine.booking"


class CreateReply(Reply, array_like=True, frozen=True):
    future_slots: int = 0
    """``slot_limit``: the doctor's future slots now."""
    overlapping: str = ""
    """``slot_overlap``: the member overlapped (``~<id>`` for a pending edit's shadow)."""


class CommitReply(Reply, array_like=True, frozen=True):
    done: int = 0
    missing: int = 0
    """Slots of the batch no longer in Redis (rebuilt meanwhile)."""


class LockReply(Reply, array_like=True, frozen=True):
    start: int = 0
    end: int = 0


class UnlockReply(Reply, array_like=True, frozen=True):
    pass


class ReserveReply(Reply, array_like=True, frozen=True):
    start: int = 0
    end: int = 0
    deadline: int = 0
    requested_at: int = 0
    hold_entry: str = ""
    """The waitlist entry whose hold the request took (its patient booked the held slot)."""


class ReopenReply(Reply, array_like=True, frozen=True):
    pass


class AcceptReply(Reply, array_like=True, frozen=True):
    pass


class ClaimReply(Reply, array_like=True, frozen=True):
    other: str = ""
    """``patient_overlap``: the appointment overlapped; ``request_limit``: ``doctor`` or
    ``total``, the cap reached."""


class RebuildReply(Reply, array_like=True, frozen=True):
    pass


class WindowReply(Reply, array_like=True, frozen=True):
    slots: list[str] = []
    """Per slot hash asked for, its fields joined by tabs: status, start, end, appointment
    id, hold entry, patient id, hold expires ("" for a missing field, status "" for a slot
    whose hash is gone)."""


class MoveReply(Reply, array_like=True, frozen=True):
    old_slot: str = ""
    """What happened to the old slot: ``reopened``, ``freed`` (already started) or ``kept``."""


class Scripts:
    """Every booking script, registered on one Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.create = load(redis, _PACKAGE, "create", CreateReply)
        self.commit = load(redis, _PACKAGE, "commit", CommitReply)
        self.lock = load(redis, _PACKAGE, "lock", LockReply)
        self.unlock = load(redis, _PACKAGE, "unlock", UnlockReply)
        self.reserve = load(redis, _PACKAGE, "reserve", ReserveReply)
        self.reopen = load(redis, _PACKAGE, "reopen", ReopenReply)
        self.accept = load(redis, _PACKAGE, "accept", AcceptReply)
        self.claim = load(redis, _PACKAGE, "claim", ClaimReply)
        self.sweep = sweep_script(redis)
        self.rebuild = load(redis, _PACKAGE, "rebuild", RebuildReply)
        self.move = load(redis, _PACKAGE, "move", MoveReply)
        self.window = load(redis, _PACKAGE, "window", WindowReply)


__all__ = ["Coalescer", "Script", "Scripts"]

_Call = tuple["AsyncScript", list[Any], list[Any], "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Coalescer:
    """Runs the script calls made during one turn of the event loop as one pipeline.

    Under load many coroutines call scripts at once, and each call alone pays redis-py's
    per-command cost: a pooled connection, a socket write, a read. Calls made in the same turn
    are sent together instead (one write, replies read in order), and each caller gets its own
    result or its own error exactly as if it had called alone; a failure of the connection
    fails every call of the batch, as it would have failed each. A script Redis does not know
    (NOSCRIPT, after a flush or on a new server) is loaded and its calls are rerun. A lone call
    is sent as a plain EVALSHA. Atomicity is unchanged: each script still runs alone in Redis.
    Cancelling a caller does not recall its call (as with any call already sent).
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._batch: list[_Call] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.calls = 0

    async def __call__(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._batch is None:
            self._batch = []
            loop.call_soon(self._flush)
        self._batch.append((script, keys, args, future))
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch or [], None
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            await self._send_batch(batch)
        finally:  # cancelled (shutdown) or failed oddly: no caller is left waiting
            for *_, future in batch:
                if not future.done():
                    future.cancel()

    async def _send_batch(self, batch: list[_Call]) -> None:
        self.batches += 1
        self.calls += len(batch)
        if len(batch) == 1:
            script, keys, args, future = batch[0]
            try:
                _settle(future, await script(keys=keys, args=args))
            except Exception as exc:
                _fail(future, exc)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    # execute_command: redis-py's cluster pipeline blocks its evalsha() method
                    # (not the command), and routes EVALSHA by its keys like any other.
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for *_, future in batch:
                _fail(future, exc)
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                try:  # redis-py's own call loads the script and runs it again
                    _settle(future, await script(keys=keys, args=args))
                except Exception as exc:
                    _fail(future, exc)
            elif isinstance(result, Exception):
                _fail(future, result)
            else:
                _settle(future, result)
