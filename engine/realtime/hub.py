"""The subscription hub: one Redis pub/sub connection per process, fanned out in memory.

Every event is published on ``hm:t:<topic>`` with a payload that already is the client frame
(:mod:`engine.realtime.events`). The hub holds one ``PSUBSCRIBE hm:t:*`` for the whole process,
and a reader task hands each payload, decoded to text once and never parsed, to the local
subscribers of its topic. Fan-out is synchronous and never awaits: a frame is appended to each
subscriber's bounded queue and the subscriber is woken only when its queue goes from empty to
non-empty. A subscriber whose queue is full is dropped (removed from every topic, its queue
discarded, woken with ``dropped = "slow"``) so that its owner closes it: a slow client never
delays the others, and it learns that it missed events because its connection closes.

If the pub/sub connection fails, the reader reconnects with exponential backoff (0.1 s doubling
to 5 s, with jitter) and subscribes again. Events published while it is down are not replayed:
clients resync from the agenda and appointment endpoints when they reconnect, which is the
catch-up contract of the websocket API.

Why not Litestar's channels plugin (evaluated first, as the issue asked): measured with
``loadtest/ws_swarm.py --channels --baseline`` in the same runs as this hub (2-core machine
shared with other work; figures in ``loadtest/README.md``). Memory per connection: plugin
30.8-31.2 KiB, hub 29.2-29.3 KiB (the hub's figure includes the whole gateway: auth, topic
checks, limits, Prometheus middleware; the plugin's app had none of it). Fan-out p99: at 1,000
clients plugin 85 ms, hub 121 ms; at 5,000 plugin 2,006 ms, hub 1,409 ms. Neither met the
bare-``websockets`` baseline (14-15 KiB, 85 / 315 ms). The plugin is replaced for the measured
memory and 5,000-client p99, and for what it does structurally: a background task and an
``asyncio.Queue`` per subscriber (two tasks per websocket with the receive loop), one
``SUBSCRIBE`` per channel instead of one pattern, a set of every subscribed channel built for
each incoming message, and, on a full backlog, events silently dropped while the client stays
connected (it cannot know it missed any). The hub closes such a client instead, and needs no
task per subscriber: the connection's own loop drains the queue.

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

    The hub appends frames to ``frames`` and calls :meth:`wake` when the list goes from empty
    to non-empty, or once when the subscriber is dropped. The owner takes the whole list
    (``batch, sub.frames = sub.frames, []``) and writes it out. At most ``queue_size`` frames
    wait in ``frames``; a batch being written is at most another ``queue_size``.

    Subclasses override :meth:`wake`; it is called inside the fan-out loop, so it must not
    block or call back into the hub.
    """

    __slots__ = ("dropped", "frames", "topics")

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.topics: set[str] = set()
        self.dropped: DropReason | None = None

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

    def dispatch(self, topic: str, frame: str) -> int:
        """Queue ``frame`` for every local subscriber of ``topic``; the number it was queued for.

        Never awaits. Subscribers whose queue is full are dropped as slow after the loop.
        """
        members = self._topics.get(topic)
        if not members:
            return 0
        limit = self._queue_size
        slow: list[Subscriber] | None = None
        queued = 0
        for sub in members:
            frames = sub.frames
            if len(frames) >= limit:
                if slow is None:
                    slow = []
                slow.append(sub)
                continue
            frames.append(frame)
            queued += 1
            if len(frames) == 1:
                sub.wake()
        if slow is not None:
            for sub in slow:
                self.dropped_slow += 1
                self._drop(sub, "slow")
        return queued

    def _drop(self, subscriber: Subscriber, reason: DropReason) -> None:
        self.detach(subscriber)
        subscriber.frames = []
        if subscriber.dropped is None:
            subscriber.dropped = reason
            subscriber.wake()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            topic = channel[_PREFIX_LEN:].decode()
            frame = data.decode()
        except UnicodeDecodeError:
            log.warning("realtime: dropped a frame that is not UTF-8 on %r", channel[:80])
            return
        self.frames_in += 1
        self.dispatch(topic, frame)

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
