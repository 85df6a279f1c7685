"""The script coalescer on a real redis-server: calls made together share one pipeline, and
each caller still gets exactly its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.booking._scripts import Coalescer
from engine.redis_client import connect_redis
from tests.support import RedisServer

ECHO = """
if ARGV[1] == "fail" then
  return redis.error_reply("asked to fail")
end
return {KEYS[1], ARGV[1], redis.call("INCR", KEYS[1])}
"""


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = connect_redis(redis_server.url.rsplit("/", 1)[0] + "/8")
    await redis.flushdb()
    yield redis
    await redis.flushdb()
    await redis.aclose()


async def test_each_caller_gets_its_own_result_or_error(client: Redis) -> None:
    """50 concurrent calls, every tenth failing: one or few pipelines, nobody gets another's."""
    script = client.register_script(ECHO)
    run = Coalescer(client)
    args = ["fail" if i % 10 == 0 else f"v{i}" for i in range(50)]
    results = await asyncio.gather(
        *(run(script, [f"k{i}"], [arg]) for i, arg in enumerate(args)), return_exceptions=True
    )
    for i, (arg, result) in enumerate(zip(args, results, strict=True)):
        if arg == "fail":
            assert isinstance(result, ResponseError)
            assert "asked to fail" in str(result)
        else:
            assert result == [f"k{i}".encode(), arg.encode(), 1]
    assert run.calls == 50
    assert run.batches < 50  # the calls really were sent together


async def test_a_script_flushed_from_redis_is_loaded_again(client: Redis) -> None:
    """After SCRIPT FLUSH, a batch of calls (NOSCRIPT each) still gets every result."""
    script = client.register_script(ECHO)
    run = Coalescer(client)
    assert await run(script, ["warm"], ["x"]) == [b"warm", b"x", 1]
    await client.script_flush()
    results = await asyncio.gather(*(run(script, [f"n{i}"], [f"v{i}"]) for i in range(20)))
    assert results == [[f"n{i}".encode(), f"v{i}".encode(), 1] for i in range(20)]


async def test_a_dead_connection_fails_every_call_of_the_batch(redis_server: RedisServer) -> None:
    """If Redis cannot be reached, each caller gets the connection error, none hangs."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tests.support import free_port

    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    script = dead.register_script(ECHO)
    run = Coalescer(dead)
    results = await asyncio.wait_for(
        asyncio.gather(*(run(script, ["k"], [str(i)]) for i in range(5)), return_exceptions=True),
        timeout=10,
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await dead.aclose()


async def test_callers_are_answered_when_the_send_is_cancelled() -> None:
    """Shutting down mid-send (the send task cancelled) leaves no caller waiting forever."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # take the commands, never answer
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = connect_redis(f"redis://127.0.0.1:{port}/0")
    script = client.register_script(ECHO)
    run = Coalescer(client)
    callers = [asyncio.create_task(run(script, [f"k{i}"], ["x"])) for i in range(3)]
    await asyncio.sleep(0.2)
    assert run._sending
    assert not any(c.done() for c in callers)
    for task in list(run._sending):
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    server.close()
    await client.aclose()
