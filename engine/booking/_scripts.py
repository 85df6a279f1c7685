"""The booking Lua scripts, loaded from the ``*.lua`` files beside this module and registered
once per Redis client (EVALSHA, reloaded on NOSCRIPT), and the coalescer that sends the calls
made at the same moment as one pipeline."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

_Call = tuple["AsyncScript", list[Any], list[Any], "asyncio.Future[Any]"]


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
