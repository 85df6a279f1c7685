"""Classic against sharded pub/sub on a local Redis Cluster: what the realtime hub should use.

Starts a private cluster (3 masters, 3 replicas; ``tests/support.py``), then for each mode
publishes ``--messages`` event-sized payloads (``--topics`` doctor topics, pipelines of 64)
while one subscriber per process listens, and reports the publish rate, the delivery rate and
the publish-to-receive latency:

* ``classic``: ``PUBLISH`` on the master owning the topic's doctor (where a booking script
  runs), one ``PSUBSCRIBE hm:t:*`` on another node: the cluster bus forwards every message to
  every node, so one subscription hears all of them (the hub's design).
* ``sharded``: ``SPUBLISH`` on the owning master, the subscriber ``SSUBSCRIBE``s every topic
  (no pattern form exists), through redis-py's ``ClusterPubSub``, one connection per shard.

Usage: ``python loadtest/bench_cluster_pubsub.py [--messages 20000] [--topics 200]``. Last
line: ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402
from redis.asyncio.cluster import RedisCluster  # noqa: E402

from tests.support import RedisClusterNodes  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def run_mode(
    nodes: RedisClusterNodes, mode: str, messages: int, topics: int
) -> dict[str, Any]:
    cluster = RedisCluster(host="127.0.0.1", port=nodes.ports[0])
    await cluster.initialize()
    names = [f"hm:t:{{d:{i}}}.slots" for i in range(topics)]
    owners = {n: cluster.get_node_from_key(n) for n in names}
    latencies: list[float] = []
    done = asyncio.Event()
    pubsub: Any
    if mode == "classic":
        other = next(n for n in cluster.get_nodes() if n.name != owners[names[0]].name)
        listener = Redis(host=other.host, port=other.port)
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe("hm:t:*")
    else:
        pubsub = cluster.pubsub(ignore_subscribe_messages=True)
        await pubsub.ssubscribe(*names)

    async def read() -> None:
        while len(latencies) < messages:
            if mode == "classic":
                message = await pubsub.get_message(timeout=1.0)
            else:
                message = await pubsub.get_sharded_message(timeout=1.0)
            if message and message["type"] in ("pmessage", "smessage"):
                latencies.append(time.perf_counter() - json.loads(message["data"])["t"])
        done.set()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.5)
    clients = {
        name: Redis(host=n.host, port=n.port)
        for name, n in {o.name: o for o in owners.values()}.items()
    }
    command = "PUBLISH" if mode == "classic" else "SPUBLISH"
    started = time.perf_counter()
    sent = 0
    while sent < messages:
        batch: dict[str, list[str]] = {}
        for i in range(sent, min(messages, sent + 64)):
            topic = names[i % topics]
            batch.setdefault(owners[topic].name, []).append(topic)
        for node, chosen in batch.items():
            async with clients[node].pipeline(transaction=False) as pipe:
                for topic in chosen:
                    payload = json.dumps({"t": time.perf_counter(), "pad": "x" * 200})
                    pipe.execute_command(command, topic, payload)
                await pipe.execute()
            sent += len(chosen)
    published = time.perf_counter() - started
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        reader.cancel()
    received = time.perf_counter() - started
    for c in clients.values():
        await c.aclose()
    await pubsub.aclose()
    await cluster.aclose()
    return {
        f"{mode}_publish_per_s": round(messages / published),
        f"{mode}_delivered_per_s": round(len(latencies) / received),
        f"{mode}_received": len(latencies),
        f"{mode}_p50_ms": round(pct(latencies, 0.5) * 1000, 2),
        f"{mode}_p99_ms": round(pct(latencies, 0.99) * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--topics", type=int, default=200)
    args = parser.parse_args()
    nodes = RedisClusterNodes.start()
    try:
        results: dict[str, Any] = {}
        for mode in ("classic", "sharded", "classic", "sharded"):
            figures = await run_mode(nodes, mode, args.messages, args.topics)
            print(figures, flush=True)
            results.update(figures)
    finally:
        nodes.stop()
    print(" ".join(f"{k}={v}" for k, v in results.items()))


if __name__ == "__main__":
    asyncio.run(main())
