"""The realtime hub against real Redis and in-process fakeredis (the embedded mode)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from engine.realtime import Hub, Subscriber, channel, frames, publish
from engine.redis_client import connect_redis
from tests.support import RedisClusterNodes, RedisServer, timeout


class Probe(Subscriber):
    """A subscriber that records what it receives and when it was woken."""

    __slots__ = ("dropped_event", "received", "woken")

    def __init__(self) -> None:
        super().__init__()
        self.received: list[str] = []
        self.woken = asyncio.Event()
        self.dropped_event = asyncio.Event()

    def wake(self) -> None:
        self.received.extend(frame.decode() for frame in self.frames)
        self.frames = []
        self.woken.set()
        if self.dropped is not None:
            self.dropped_event.set()


class Stuck(Subscriber):
    """A subscriber that is woken but never takes its frames (a client that does not read)."""

    __slots__ = ("dropped_event",)

    def __init__(self) -> None:
        super().__init__()
        self.dropped_event = asyncio.Event()

    def wake(self) -> None:
        if self.dropped is not None:
            self.dropped_event.set()


class Direct(Subscriber):
    """A subscriber that writes frames itself during the fan-out while ``open`` is True."""

    __slots__ = ("offered", "open", "wakes", "written")

    def __init__(self) -> None:
        super().__init__()
        self.open = True
        self.offered: list[bytes] = []
        self.written: list[bytes] = []
        self.wakes = 0

    def deliver(self, frame: bytes) -> bool:
        self.offered.append(frame)
        if self.open:
            self.written.append(frame)
        return self.open

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture(params=["redis", "cluster", "fakeredis"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = Redis.from_url(server.url)
    elif request.param == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        client = connect_redis(nodes.url, cluster=True)
    else:
        import fakeredis

        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7,)))
    yield client
    await client.aclose()


@pytest.fixture
async def hub(redis: Redis) -> AsyncIterator[Hub]:
    hub = Hub(redis, queue_size=8)
    await hub.start(wait=timeout(5))
    assert hub.connected.is_set()
    yield hub
    await hub.close()


async def eventually(predicate: object, seconds: float = 5) -> None:
    async with asyncio.timeout(timeout(seconds)):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_an_event_reaches_exactly_its_topic_subscribers_byte_for_byte(
    hub: Hub, redis: Redis
) -> None:
    """A frame published on hm:t:<topic> reaches that topic's subscribers unchanged, no others."""
    slots, other, both = Probe(), Probe(), Probe()
    for sub in (slots, other, both):
        hub.attach(sub)
    hub.subscribe(slots, "doctor.D1.slots")
    hub.subscribe(both, "doctor.D1.slots")
    hub.subscribe(both, "patient.P1.appointments")
    hub.subscribe(other, "doctor.D2.slots")

    pairs = frames(["doctor.D1.slots"], "slot.updated", {"slot_id": "S1", "status": "taken"})
    await publish(redis, pairs)
    await publish(redis, frames(["patient.P1.appointments"], "appointment.refused", {"id": "A"}))
    await eventually(lambda: len(both.received) == 2)
    await asyncio.sleep(0.05)

    expected = pairs[0][1].decode()
    assert slots.received == [expected]
    assert both.received[0] == expected
    assert '"appointment.refused"' in both.received[1]
    assert other.received == []


async def test_unsubscribe_and_detach_stop_delivery(hub: Hub, redis: Redis) -> None:
    """After unsubscribe (or detach) a subscriber receives nothing more on that topic."""
    a, b = Probe(), Probe()
    hub.attach(a)
    hub.attach(b)
    hub.subscribe(a, "doctor.D1.slots")
    hub.subscribe(b, "doctor.D1.slots")
    hub.unsubscribe(a, "doctor.D1.slots")
    await redis.publish(channel("doctor.D1.slots"), b'{"n":1}')
    await eventually(lambda: b.received == ['{"n":1}'])
    hub.detach(b)
    assert hub.subscriber_counts() == {}
    await redis.publish(channel("doctor.D1.slots"), b'{"n":2}')
    await asyncio.sleep(0.1)
    assert a.received == []
    assert b.received == ['{"n":1}']


async def test_a_full_queue_drops_that_subscriber_and_not_the_others(
    hub: Hub, redis: Redis
) -> None:
    """A subscriber that never takes its frames is dropped as slow; the others get every frame."""
    stuck, fine = Stuck(), Probe()
    hub.attach(stuck)
    hub.attach(fine)
    hub.subscribe(stuck, "doctor.D1.slots")
    hub.subscribe(fine, "doctor.D1.slots")
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(20):
            pipe.execute_command("PUBLISH", channel("doctor.D1.slots"), f'{{"n":{n}}}'.encode())
        await pipe.execute()
    await eventually(lambda: len(fine.received) == 20)
    assert fine.received == [f'{{"n":{n}}}' for n in range(20)]
    assert stuck.dropped == "slow"
    assert stuck.dropped_event.is_set()
    assert stuck.frames == []
    assert stuck.topics == set()
    assert hub.dropped_slow == 1
    assert hub.subscriber_counts() == {"doctor.D1.slots": 1}


async def test_close_drops_every_subscriber_for_shutdown(redis: Redis) -> None:
    """Closing the hub wakes every subscriber with dropped='shutdown'."""
    hub = Hub(redis, queue_size=8)
    await hub.start(wait=timeout(5))
    a = Probe()
    hub.attach(a)
    hub.subscribe(a, "doctor.D1.slots")
    await hub.close()
    assert a.dropped == "shutdown"
    late = Probe()
    hub.attach(late)
    assert late.dropped == "shutdown"


async def test_the_hub_resubscribes_after_redis_drops_the_connection(
    redis_server: RedisServer,
) -> None:
    """When Redis kills the pub/sub connection the hub reconnects and delivery resumes."""
    redis = Redis.from_url(redis_server.url)
    hub = Hub(redis, queue_size=8)
    try:
        await hub.start(wait=timeout(5))
        probe = Probe()
        hub.attach(probe)
        hub.subscribe(probe, "doctor.D9.slots")
        killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1

        async def delivered() -> bool:
            await redis.publish(channel("doctor.D9.slots"), b'{"after":"kill"}')
            await asyncio.sleep(0.1)
            return bool(probe.received)

        async with asyncio.timeout(timeout(10)):
            while not await delivered():
                pass
        assert probe.received[0] == '{"after":"kill"}'
        assert hub.reconnects >= 1
    finally:
        await hub.close()
        await redis.aclose()


def test_deliver_is_the_fast_path_and_never_overtakes_queued_frames() -> None:
    """deliver() takes the frame when it can; once one is queued, later ones queue behind it."""
    hub = Hub(None, queue_size=8)  # type: ignore[arg-type]  # dispatch never touches Redis
    sub = Direct()
    hub.attach(sub)
    hub.subscribe(sub, "doctor.D1.slots")

    assert hub.dispatch("doctor.D1.slots", b"1") == 1
    assert sub.written == [b"1"]
    assert sub.frames == []
    assert sub.wakes == 0
    assert (hub.delivered_direct, hub.delivered_queued) == (1, 0)

    sub.open = False  # e.g. the socket's buffer is full
    hub.dispatch("doctor.D1.slots", b"2")
    assert sub.frames == [b"2"]
    assert sub.wakes == 1
    sub.open = True  # the socket drained, but frame 2 is still queued
    hub.dispatch("doctor.D1.slots", b"3")
    assert sub.offered == [b"1", b"2"]  # not offered while older frames wait
    assert sub.frames == [b"2", b"3"]
    assert sub.wakes == 1  # woken once, on empty -> non-empty
    assert (hub.delivered_direct, hub.delivered_queued) == (1, 2)

    sub.frames = []  # the owner wrote the queue out
    hub.dispatch("doctor.D1.slots", b"4")
    assert sub.written == [b"1", b"4"]


def test_a_subscriber_without_deliver_is_queued_as_before() -> None:
    """The default deliver() declines: frames are queued and the subscriber woken."""
    hub = Hub(None, queue_size=8)  # type: ignore[arg-type]
    probe = Probe()
    hub.attach(probe)
    hub.subscribe(probe, "doctor.D1.slots")
    hub.dispatch("doctor.D1.slots", b'{"n":1}')
    assert probe.received == ['{"n":1}']
    assert (hub.delivered_direct, hub.delivered_queued) == (0, 1)
