"""The subscription hub: one Redis pub/sub connection per process, fanned out in memory.

Every event is published on ``hm:t:<topic>`` with a payload that already is the client frame
(:mod:`engine.realtime.events`). The hub holds one ``PSUBSCRIBE hm:t:*`` for the whole process,
and a reader task hands each payload, checked once to be UTF-8 and never parsed or re-encoded,
as the same ``bytes`` object to every local subscriber of its topic. Fan-out is synchronous
and never awaits, like ``websockets.broadcast``: each subscriber whose queue is empty is first
offered the frame through :meth:`Subscriber.deliver`, which the gateway implements as a direct
write to the connection's socket when it can take it; otherwise the frame is appended to the
subscriber's bounded queue and the subscriber is woken only when its queue goes from empty to
non-empty. A subscriber whose queue is full is dropped (removed from every topic, its queue
discarded, woken with ``dropped = "slow"``) so that its owner closes it: a slow client never
delays the others, and it learns that it missed events because its connection closes. The
engine stays transport-agnostic: it never sees a socket, only ``deliver`` and ``wake``.

Measured with ``loadtest/ws_swarm.py --baseline`` (2-core machine; figures and commands in
``loadtest/README.md``): with the gateway's websocket edge (``gateway/realtime/edge.py``), whose
``deliver`` writes one pre-built frame per event to each socket, fan-out p99 to 1,000 / 5,000
clients of one process was 21-36 / 65-78 ms against 49-50 / 98-144 ms for a bare
``websockets`` broadcast server in the same runs, and to 20,000 clients on two processes
255-269 ms against 838-1,074 ms; memory was 8.0-10.6 KiB per connection against 14.4-14.9.
When every event instead woke every connection's task (the first ASGI version), the same
commands gave 85 / 1,003 ms and 4.2 s.

Why not Litestar's channels plugin (evaluated first, as the issue asked; measured in the
earlier runs of ``ws_swarm.py --channels --baseline``, before the direct write): memory per
connection 30.8-31.2 KiB, and fan-out p99 85 ms at 1,000 clients, 2,006 ms at 5,000, 21.2 s at
20,000. Structurally it has a background task and an ``asyncio.Queue`` per subscriber (two
tasks per websocket with the receive loop), one ``SUBSCRIBE`` per channel instead of one
pattern, a set of every subscribed channel built for each incoming message, and, on a full
backlog, events silently dropped while the client stays connected (it cannot know it missed
any). The hub closes such a client instead, and needs no task per subscriber.

On a Redis Cluster (``HEALTHMED_REDIS_CLUSTER``) the hub keeps classic pub/sub: a ``PUBLISH``
on any node (a booking script publishes on its doctor's master) is forwarded by the cluster bus
to every node, so the one ``PSUBSCRIBE`` per process, on whichever node, still hears every
topic. Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7) keeps a message on its shard, but
has no pattern form: each process would subscribe every topic its clients follow, on every
shard, and a script could only publish to channels in its own slot (patient topics are not).
Measured with ``loadtest/bench_cluster_pubsub.py --messages 5000 --topics 100`` (local 3+3
cluster, 2 cores, load average 19.5): classic delivered all 5,000 at 1,881-5,826 msg/s, p99
25-52 ms; sharded through redis-py's ``ClusterPubSub`` delivered 4,702 of 5,000 within 30 s at
139-153 msg/s, p99 6.2-6.5 s (its reader polls one shard connection after another). The
cluster-bus cost of classic pub/sub grows with the node count; at the sizes in
``loadtest/CAPACITY.md`` (3-6 masters) it is far from the limit.

If the pub/sub connection fails, the reader reconnects with exponential backoff (0.1 s doubling
to 5 s, with jitter) and subscribes again. Events published while it is down are not replayed:
clients resync from the agenda and appointment endpoints when they reconnect, which is the
catch-up contract of the websocket API.

Concurrency: every method runs on the event loop thread; ``dispatch`` does not yield, so no
subscriber can change state in the middle of a fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Literal

from engine.realtime.events import CHANNEL_PATTERN, CHANNEL_PREFIX

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = logging.getLogger("healthmed.realtime")

DropReason = Literal["slow", "shutdown"]

_PREFIX_LEN = len(CHANNEL_PREFIX)
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0


class Subscriber:
    """One local consumer of frames (a websocket connection in the gateway).

    For each frame the hub first offers it to :meth:`deliver` when ``frames`` is empty; a
    subscriber that can write it out at once, synchronously, does so and returns True (the
    common case: no task is woken, nothing is queued). Otherwise the hub appends the frame to
    ``frames`` and calls :meth:`wake` when the list goes from empty to non-empty, or once when
    the subscriber is dropped. The owner takes the whole list
    (``batch, sub.frames = sub.frames, []``) and writes it out. At most ``queue_size`` frames
    wait in ``frames``; a batch being written is at most another ``queue_size``.

    Frames are UTF-8 encoded JSON text (``bytes``), the same object for every subscriber of
    an event: the hub checks the encoding once per event, never per subscriber.

    Subclasses override :meth:`deliver` and :meth:`wake`; both are called inside the fan-out
    loop, so they must not block or call back into the hub.
    """

    __slots__ = ("dropped", "frames", "topics")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.topics: set[str] = set()
        self.dropped: DropReason | None = None

    def deliver(self, frame: bytes) -> bool:
        """Write ``frame`` now if that is possible without blocking; False to have it queued.

        Only called while ``frames`` is empty, so a True never overtakes a queued frame; an
        implementation must also return False while a write of its own is still in progress.
        """
        return False

    def wake(self) -> None:
        """Frames are waiting, or the subscriber was dropped. Must not block."""


class Hub:
    """Topic → local subscribers, fed by one Redis pub/sub connection.

    ``start`` launches the reader; ``close`` stops it and drops every subscriber with
    ``"shutdown"``. Safe to use before ``start`` (frames simply do not arrive).
    """

    def __init__(self, redis: Redis, *, queue_size: int) -> None:
        self._redis = redis
        self._queue_size = queue_size
        self._topics: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = asyncio.Event()
        """Set while the pattern subscription is live."""
        self.frames_in = 0
        self.delivered_direct = 0
        """Frames written by a subscriber's :meth:`Subscriber.deliver` during the fan-out."""
        self.delivered_queued = 0
        """Frames queued for a subscriber's own task to write."""
        self.dropped_slow = 0
        self.reconnects = 0

    # -- subscribers ---------------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> None:
        """Register a subscriber (it has no topics yet). A closed hub drops it at once."""
        if self._closed:
            self._drop(subscriber, "shutdown")
            return
        self._subscribers.add(subscriber)

    def subscribe(self, subscriber: Subscriber, topic: str) -> None:
        """Add ``topic`` to a subscriber; idempotent. Limits are the caller's business."""
        if subscriber.dropped is not None or topic in subscriber.topics:
            return
        subscriber.topics.add(topic)
        members = self._topics.get(topic)
        if members is None:
            self._topics[topic] = {subscriber}
        else:
            members.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        """Remove ``topic`` from a subscriber; idempotent."""
        subscriber.topics.discard(topic)
        members = self._topics.get(topic)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._topics[topic]

    def detach(self, subscriber: Subscriber) -> None:
        """Forget a subscriber and all its topics; idempotent, never wakes it."""
        for topic in list(subscriber.topics):
            self.unsubscribe(subscriber, topic)
        self._subscribers.discard(subscriber)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscriber_counts(self) -> dict[str, int]:
        """Local subscribers per topic (for tests and diagnostics)."""
        return {topic: len(members) for topic, members in self._topics.items()}

    # -- fan-out -------------------------------------------------------------------------

    def dispatch(self, topic: str, frame: bytes) -> int:
        """Hand ``frame`` to every local subscriber of ``topic``; the number it reached.

        Never awaits. Each subscriber with an empty queue is first offered the frame for
        immediate delivery; the others get it queued (and are woken if their queue was
        empty). Subscribers whose queue is full are dropped as slow after the loop.
        """
        members = self._topics.get(topic)
        if not members:
            return 0
        limit = self._queue_size
        slow: list[Subscriber] | None = None
        reached = 0
        direct = 0
        for sub in members:
            frames = sub.frames
            if not frames:
                if sub.deliver(frame):
                    direct += 1
                    continue
                frames.append(frame)
                sub.wake()
            elif len(frames) >= limit:
                if slow is None:
                    slow = []
                slow.append(sub)
                continue
            else:
                frames.append(frame)
            reached += 1
        self.delivered_direct += direct
        self.delivered_queued += reached
        if slow is not None:
            for sub in slow:
                self.dropped_slow += 1
                self._drop(sub, "slow")
        return reached + direct

    def _drop(self, subscriber: Subscriber, reason: DropReason) -> None:
        self.detach(subscriber)
        subscriber.frames = []
        if subscriber.dropped is None:
            subscriber.dropped = reason
            subscriber.wake()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            topic = channel[_PREFIX_LEN:].decode()
            data.decode()  # once per event: every subscriber gets these bytes as a text frame
        except UnicodeDecodeError:
            log.warning("realtime: dropped a frame that is not UTF-8 on %r", channel[:80])
            return
        self.frames_in += 1
        self.dispatch(topic, data)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, *, wait: float = 5.0) -> None:
        """Launch the reader and wait up to ``wait`` seconds for the first subscription.

        Returns either way: if Redis is not reachable yet the reader keeps retrying.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="realtime-hub")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.connected.wait()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                # On a cluster a command (re)learns the topology first: the pub/sub connection
                # is opened to a node the client's slot map names, stale after a failover.
                await self._redis.ping()
                await pubsub.psubscribe(CHANNEL_PATTERN)
                self.connected.set()
                delay = _BACKOFF_FIRST
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    self.reconnects += 1
                self.connected.clear()
                log.warning("realtime: pub/sub connection lost (%s); retrying in %.1fs", exc, delay)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            # A timeout (not a blocking read) so redis-py's periodic health check PINGs an idle
            # link and a dead connection surfaces as an error instead of a silent hang.
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "pmessage":
                self._on_message(message["channel"], message["data"])

    async def close(self) -> None:
        """Stop the reader and drop every subscriber with ``"shutdown"``; idempotent."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sub in list(self._subscribers):
            self._drop(sub, "shutdown")


__all__ = ["DropReason", "Hub", "Subscriber"]
