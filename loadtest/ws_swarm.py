"""Websocket fan-out benchmark: N clients on one hot doctor's slots topic (``make bench-ws``).

One run measures up to three servers, one after another, on the same private ``redis-server``
and the same event feed:

* ``hub``: the real gateway (``python -m gateway.cli serve``: uvicorn, uvloop, the gateway's
  own websocket protocol ``gateway/realtime/edge.py``) with its realtime hub; clients
  authenticate with real access tokens (signed with the secret the script gives the server);
* ``channels`` (``--channels``): a minimal Litestar app on the same uvicorn settings whose
  endpoint uses Litestar's channels plugin (``RedisChannelsPubSubBackend``, backlog 256);
* ``baseline`` (``--baseline``): a bare ``websockets`` server (uvloop) that relays the same
  Redis feed with ``websockets.broadcast``.

The bench servers speak the same protocol (auth → ready, subscribe → subscribed, ping → pong)
but do not verify tokens. ``--servers K`` runs K processes of each, sharing Redis; clients are
spread over them round robin (one process can hold ~20,000 fds at most here, so 20,000
connections need two).

Clients are a hand-written asyncio protocol (no client library reads ahead, almost no memory),
in ``--procs`` processes, bound to ``--addrs`` loopback source addresses (127.0.0.2...) so
ephemeral ports do not run out; the file limit is raised to the hard limit. Every client
subscribes to the hot doctor's ``doctor.<id>.slots``; then ``--events`` events are triggered,
one every ``--interval`` seconds:

* ``--trigger booking`` (default): real bookings. A gateway process of its own (the booking
  API, on the same Redis, not measured) registers a doctor and a patient, publishes slots, and
  each event is a ``POST /v1/appointments`` of the next slot: its ``slot.updated`` ("taken"),
  published by ``reserve.lua``, is what every server kind relays, so all kinds get the same
  feed from the same trigger;
* ``--trigger publish``: the frame is PUBLISHed straight into Redis on ``hm:t:<topic>`` in
  the envelope format (the fan-out alone, without the booking path).

Clients recognise each event by its ``slot_id``. For each event, the fan-out latency is the
time from just before the trigger (the POST, or the PUBLISH) to the moment the last client
received it (clients share the machine's monotonic clock). Memory per connection is the
growth of the measured servers' VmRSS from before the clients connect to after they all
subscribed, divided by the connections held.

Prints one block per server kind, then one ``key=value`` line (last line of output):
``connections rss_kb_per_conn fanout_p50_ms fanout_p99_ms fanout_max_ms lost_events ...``
plus ``baseline_*``/``channels_*`` and the ratios hub/baseline (``rss_ratio``, ``p99_ratio``).

Usage: ``python loadtest/ws_swarm.py -n 20000 --servers 2 --procs 4 --baseline --channels``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOT = "BENCHDOC0000000000000000000"
JWT_SECRET = secrets.token_urlsafe(48)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server on {port} did not listen")


# -- bench servers (subcommands) ---------------------------------------------------------

_READY = b'{"type":"ready","role":"patient","user_id":"bench","topics":[]}'
_PONG = b'{"type":"pong"}'


def _subscribed(topic: str) -> str:
    return json.dumps({"type": "subscribed", "topic": topic}, separators=(",", ":"))


def serve_channels(port: int, redis_url: str) -> None:
    """A Litestar app whose websocket endpoint relays through the channels plugin."""
    import uvicorn
    from litestar import Litestar, WebSocket, websocket
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from redis.asyncio import Redis

    @websocket("/v1/ws", signature_namespace={"ChannelsPlugin": ChannelsPlugin})
    async def ws(socket: WebSocket[Any, Any, Any], channels: ChannelsPlugin) -> None:
        await socket.accept()
        await socket.receive_data("text")  # auth (not verified here)
        await socket.send_data(_READY.decode())
        topic = json.loads(await socket.receive_data("text"))["topic"]
        async with channels.start_subscription(["hm:t:" + topic]) as sub:
            await socket.send_data(_subscribed(topic))
            async with sub.run_in_background(socket.send_data):
                while True:
                    event = await socket.receive()
                    if event["type"] == "websocket.disconnect":
                        return
                    await socket.send_data(_PONG.decode())

    plugin = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=Redis.from_url(redis_url)),
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=256,
        subscriber_backlog_strategy="dropleft",
    )
    app = Litestar([ws], plugins=[plugin])
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        ws="websockets-sansio", log_level="warning", access_log=False, backlog=4096,
    )  # fmt: skip


def serve_baseline(port: int, redis_url: str) -> None:
    """A bare websockets server relaying the Redis feed with ``websockets.broadcast``."""
    import uvloop
    from redis.asyncio import Redis
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    topics: dict[str, set[ServerConnection]] = {}

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # auth (not verified here)
        await ws.send(_READY.decode())
        topic = json.loads(await ws.recv())["topic"]
        topics.setdefault(topic, set()).add(ws)
        try:
            await ws.send(_subscribed(topic))
            async for _ in ws:
                await ws.send(_PONG.decode())
        finally:
            topics[topic].discard(ws)

    async def feed() -> None:
        pubsub = Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe("hm:t:*")
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "pmessage":
                members = topics.get(msg["channel"][5:].decode())
                if members:
                    broadcast(members, msg["data"].decode())

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, backlog=4096):
            await feed()

    uvloop.run(main())


# -- clients -------------------------------------------------------------------------------

_HANDSHAKE = (
    b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame; the mask is all zeros (allowed, and the payload stays as is)."""
    n = len(payload)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0" + payload


class Stats:
    def __init__(self, slots: list[str]) -> None:
        """Deliveries of the events whose ``slot_id``s are ``slots``, in that order."""
        self.index = {slot.encode(): n for n, slot in enumerate(slots)}
        self.counts = [0] * len(slots)
        self.last = [0] * len(slots)
        self.subscribed = 0
        self.closed = 0
        self.close_codes: dict[int, int] = {}


class Client(asyncio.Protocol):
    __slots__ = ("buf", "hello", "open", "stats", "transport")

    def __init__(self, stats: Stats, hello: bytes) -> None:
        self.stats = stats
        self.hello = hello
        self.buf = b""
        self.open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(_HANDSHAKE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(buf[:200])
            self.open = True
            buf = buf[end + 4 :]
            assert self.transport is not None
            self.transport.write(self.hello)
        pos, size_all = 0, len(buf)
        while size_all - pos >= 2:
            size, head = buf[pos + 1] & 0x7F, 2
            if size == 126:
                if size_all - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if size_all - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size_all - pos < head + size:
                break
            opcode = buf[pos] & 0x0F
            payload = buf[pos + head : pos + head + size]
            pos += head + size
            self.on_frame(opcode, payload)
        self.buf = buf[pos:]

    def on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 1:
            if payload.startswith(b'{"type":"event"'):
                at = payload.find(b'"slot_id":"') + 11
                stats = self.stats
                n = stats.index.get(payload[at : payload.find(b'"', at)])
                if n is not None:
                    stats.counts[n] += 1
                    stats.last[n] = time.monotonic_ns()
            elif payload.startswith(b'{"type":"subscribed"'):
                self.stats.subscribed += 1
        elif opcode == 9 and self.transport is not None:
            self.transport.write(client_frame(payload, opcode=10))
        elif opcode == 8 and self.transport is not None:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.stats.close_codes[code] = self.stats.close_codes.get(code, 0) + 1
            self.transport.close()

    def ping(self) -> None:
        if self.transport is not None:
            self.transport.write(client_frame(b'{"type":"ping"}'))


async def _worker(pipe: Any, index: int, count: int, ports: list[int], addrs: int,
                  first: int, in_flight: int, topic: str, slots: list[str]) -> None:  # fmt: skip
    import jwt

    loop = asyncio.get_running_loop()
    stats = Stats(slots)
    sub = client_frame(json.dumps({"type": "subscribe", "topic": topic}).encode())
    clients: list[Client] = []

    async def keepalive() -> None:
        """An application ping every 20 s per client: the server closes idle ones at 60 s."""
        while True:
            await asyncio.sleep(20)
            for c in clients:
                c.ping()

    pinger = asyncio.create_task(keepalive())
    now = int(time.time())
    started = 0
    for i in range(first, first + count):
        claims = {
            "iss": "healthmed",
            "aud": "healthmed-api",
            "sub": f"bench-{i}",
            "role": "patient",
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        hello = client_frame(json.dumps({"type": "auth", "token": token}).encode()) + sub
        while started - stats.subscribed - stats.closed > in_flight:
            await asyncio.sleep(0.005)
        src = f"127.0.0.{2 + i % addrs}"
        try:
            _, client = await loop.create_connection(
                lambda hello=hello: Client(stats, hello),
                "127.0.0.1",
                ports[i % len(ports)],
                local_addr=(src, 0),
            )
        except OSError as exc:
            print(f"worker {index}: connect failed after {len(clients)}: {exc}", file=sys.stderr)
            break
        clients.append(client)
        started += 1
    deadline = time.monotonic() + 60
    while stats.subscribed + stats.closed < started and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    pipe.send(("ready", stats.subscribed))
    _, wait_until = await asyncio.to_thread(pipe.recv)  # ("finish", monotonic deadline)
    expected = stats.subscribed
    while time.monotonic() < wait_until:
        if all(c >= expected for c in stats.counts):
            break
        await asyncio.sleep(0.05)
    pinger.cancel()
    alive = stats.subscribed - stats.closed
    pipe.send(("stats", alive, stats.counts, stats.last, stats.close_codes))
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0.2)


def worker_main(pipe: Any, *args: Any) -> None:
    import uvloop

    raise_nofile()
    uvloop.run(_worker(pipe, *args))


# -- coordinator ---------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    connections: int = 0
    rss_kb_per_conn: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    fanouts_ms: list[float] = field(default_factory=list)
    lost: int = 0

    def pct(self, q: float) -> float:
        if not self.fanouts_ms:
            return float("nan")
        ordered = sorted(self.fanouts_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_servers(
    kind: str, count: int, redis_url: str, tmp: Path
) -> list[tuple[int, subprocess.Popen[bytes]]]:
    servers = []
    for k in range(count):
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if kind == "hub":
            data = tmp / f"hub-{k}"
            env.update(
                HEALTHMED_REDIS_URL=redis_url, HEALTHMED_PORT=str(port),
                HEALTHMED_HOST="127.0.0.1", HEALTHMED_DATA_DIR=str(data),
                HEALTHMED_JWT_SECRET=JWT_SECRET, HEALTHMED_ENV="test",
                HEALTHMED_LOG_LEVEL="WARNING",
            )  # fmt: skip
            cmd = [sys.executable, "-m", "gateway.cli", "serve"]
        else:
            cmd = [sys.executable, __file__, f"serve-{kind}", str(port), redis_url]
        log = (tmp / f"{kind}-{k}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_port(port, proc)
        servers.append((port, proc))
    time.sleep(1.0)
    return servers


class PublishTrigger:
    """Events PUBLISHed straight into Redis in the envelope format: the fan-out alone."""

    name = "publish"

    def __init__(self, redis_url: str, events: int) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.events = events
        self.topic = f"doctor.{HOT}.slots"
        self.rounds = 0
        self.slots: list[str] = []

    def prepare(self) -> list[str]:
        """The slot ids of the next run's events (distinct for each server kind)."""
        self.rounds += 1
        self.slots = [f"{HOT}.r{self.rounds}.e{n}" for n in range(self.events)]
        return self.slots

    def fire(self, n: int) -> None:
        frame = json.dumps(
            {"type": "event", "topic": self.topic, "event": "slot.updated",
             "data": {"slot_id": self.slots[n], "doctor_id": HOT,
                      "start": "2026-12-01T13:00:00Z", "end": "2026-12-01T13:50:00Z",
                      "status": "taken"},
             "at": "2026-11-28T00:00:00Z"},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        self.redis.publish("hm:t:" + self.topic, frame)

    def close(self) -> None:
        self.redis.close()


class BookingTrigger:
    """Real bookings of the hot doctor's slots through a gateway process of its own.

    That process (the booking API) shares the run's Redis and is not measured: it registers a
    doctor and a patient, publishes ``events`` slots per server kind, and books one per event;
    ``reserve.lua`` publishes the ``slot.updated`` every measured server relays.
    """

    name = "booking"

    def __init__(self, redis_url: str, tmp: Path, events: int, rounds: int) -> None:
        import httpx

        from engine.accounts.validators import cpf_check_digits

        self.events = events
        port = free_port()
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "HEALTHMED_REDIS_URL": redis_url,
            "HEALTHMED_PORT": str(port), "HEALTHMED_HOST": "127.0.0.1",
            "HEALTHMED_DATA_DIR": str(tmp / "booking-api"), "HEALTHMED_JWT_SECRET": JWT_SECRET,
            "HEALTHMED_ENV": "test", "HEALTHMED_LOG_LEVEL": "WARNING",
            # One patient books every event's slot with the one doctor: above the default
            # request caps (3 a doctor, 10 in all), which this fan-out bench does not measure.
            "HEALTHMED_REQUEST_LIMIT_PER_DOCTOR": str(events * rounds + 1),
            "HEALTHMED_REQUEST_LIMIT_TOTAL": str(events * rounds + 1),
        }  # fmt: skip
        log = (tmp / "booking-api.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(port, self.proc)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        n = secrets.randbelow(10**8)
        password = "bench horse battery staple"
        doctor = self._post("/v1/doctors", {
            "name": f"Dr Hot {n}", "crm": f"{n:08d}", "uf": "SP", "email": f"hot{n}@example.com",
            "password": password, "specialty": "cardiologia", "price_cents": 25_000,
            "location": {"lat": -23.55, "lon": -46.63},
        })  # fmt: skip
        doctor_token = self._post(
            "/v1/auth/doctors/login", {"crm": f"{n:08d}", "uf": "SP", "password": password}
        )["access_token"]
        cpf = f"{n:09d}" + cpf_check_digits(f"{n:09d}")
        self._post("/v1/patients", {
            "name": f"Bench Patient {n}", "email": f"patient{n}@example.com", "cpf": cpf,
            "password": password,
        })  # fmt: skip
        patient_token = self._post(
            "/v1/auth/patients/login", {"email": f"patient{n}@example.com", "password": password}
        )["access_token"]
        self.patient = {"Authorization": f"Bearer {patient_token}"}
        self.topic = f"doctor.{doctor['id']}.slots"
        # Non-overlapping hourly slots from tomorrow, far from the 15-minute request cut-off.
        base = int(time.time() // 3600 + 24) * 3600
        self.pool: list[str] = []
        total = events * rounds
        for chunk in range(0, total, 500):
            spans = [
                {"start": _iso(base + 3600 * i), "end": _iso(base + 3600 * i + 3000)}
                for i in range(chunk, min(total, chunk + 500))
            ]
            created = self._post(
                "/v1/me/slots", {"slots": spans}, {"Authorization": f"Bearer {doctor_token}"}
            )
            self.pool += [item["id"] for item in created["items"]]
        self.slots: list[str] = []

    def _post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        r = self.http.post(path, json=body, headers=headers)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"booking API: {path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def prepare(self) -> list[str]:
        self.slots, self.pool = self.pool[: self.events], self.pool[self.events :]
        return self.slots

    def fire(self, n: int) -> None:
        self._post("/v1/appointments", {"slot_id": self.slots[n]}, self.patient)

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _iso(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


Trigger = PublishTrigger | BookingTrigger


def run_kind(
    kind: str, args: argparse.Namespace, redis_url: str, tmp: Path, trigger: Trigger
) -> Result:
    result = Result(kind=kind)
    servers = start_servers(kind, args.servers, redis_url, tmp)
    pids = [p.pid for _, p in servers]
    ports = [port for port, _ in servers]
    slots = trigger.prepare()
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    try:
        result.rss_before_kb = sum(rss_kb(pid) for pid in pids)
        share, extra = divmod(args.n, args.procs)
        first = 0
        t_connect = time.monotonic()
        for w in range(args.procs):
            count = share + (1 if w < extra else 0)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(
                    child,
                    w,
                    count,
                    ports,
                    args.addrs,
                    first,
                    args.in_flight,
                    trigger.topic,
                    slots,
                ),
                daemon=True,
            )
            proc.start()
            pipes.append(parent)
            procs.append(proc)
            first += count
        held = 0
        for pipe, proc in zip(pipes, procs, strict=True):
            give_up = time.monotonic() + args.connect_timeout
            while not pipe.poll(1.0):
                if not proc.is_alive() or time.monotonic() > give_up:
                    raise RuntimeError("a client process died or did not connect in time")
            _, subscribed = pipe.recv()
            held += subscribed
        connect_s = time.monotonic() - t_connect
        time.sleep(2.0)
        result.rss_after_kb = sum(rss_kb(pid) for pid in pids)
        result.connections = held
        result.rss_kb_per_conn = (result.rss_after_kb - result.rss_before_kb) / max(held, 1)
        print(
            f"[{kind}] {held}/{args.n} connections subscribed in {connect_s:.1f}s; "
            f"server RSS {result.rss_before_kb} → {result.rss_after_kb} KiB",
            flush=True,
        )

        sent_ns: list[int] = []
        for n in range(args.events):
            sent_ns.append(time.monotonic_ns())
            trigger.fire(n)
            time.sleep(args.interval)
        finish_at = time.monotonic() + args.drain
        for pipe in pipes:
            pipe.send(("finish", finish_at))
        counts = [0] * args.events
        last = [0] * args.events
        still_held = 0
        close_codes: dict[int, int] = {}
        for pipe in pipes:
            if not pipe.poll(args.drain + 30):
                raise TimeoutError("a client worker did not report")
            _, alive, w_counts, w_last, w_codes = pipe.recv()
            still_held += alive
            for code, k in w_codes.items():
                close_codes[code] = close_codes.get(code, 0) + k
            for n in range(args.events):
                counts[n] += w_counts[n]
                last[n] = max(last[n], w_last[n])
        result.lost = sum(held - c for c in counts)
        result.fanouts_ms = [
            (last[n] - sent_ns[n]) / 1e6 for n in range(args.events) if counts[n] == held
        ]
        per_event = " ".join(
            f"{(last[n] - sent_ns[n]) / 1e6:.0f}" if counts[n] == held else f"({counts[n]})"
            for n in range(args.events)
        )
        print(f"[{kind}] per event, ms to the last client (or deliveries if short): {per_event}")
        if still_held != held:
            print(f"[{kind}] {held - still_held} connections closed during the run: {close_codes}")
        print(f"[{kind}] fan-out to {held}: p50 {result.pct(0.5):.0f} ms, p99 "
              f"{result.pct(0.99):.0f} ms, max {max(result.fanouts_ms, default=float('nan')):.0f}"
              f" ms over {args.events} events; lost {result.lost}; "
              f"{result.rss_kb_per_conn:.1f} KiB/conn", flush=True)  # fmt: skip
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        for _, proc in servers:
            proc.terminate()
        for _, proc in servers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return result


def start_redis(tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxclients", "1000", "--client-output-buffer-limit", "pubsub 0 0 0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
    )  # fmt: skip
    wait_port(port, proc)
    return f"redis://127.0.0.1:{port}/0", proc


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] in ("serve-channels", "serve-baseline"):
        raise_nofile()
        serve = serve_channels if sys.argv[1] == "serve-channels" else serve_baseline
        serve(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="websocket connections")
    parser.add_argument(
        "--servers",
        type=int,
        default=0,
        help="server processes per kind (default: 1, 2 above 9,000 clients)",
    )
    parser.add_argument(
        "--procs", type=int, default=0, help="client processes (default: one per 5,000 clients)"
    )
    parser.add_argument("--addrs", type=int, default=8, help="loopback source addresses")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between events (default: 1 s per 10,000 clients, min 0.5)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=15.0,
        help="seconds to wait for the last deliveries after the last event",
    )
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=100,
        help="handshakes in progress per client process (keeps auth under the 5 s deadline)",
    )
    parser.add_argument(
        "--trigger",
        choices=["booking", "publish"],
        default="booking",
        help="events from real bookings through the HTTP API (default), or PUBLISHed directly",
    )
    parser.add_argument("--baseline", action="store_true", help="also a bare websockets server")
    parser.add_argument("--channels", action="store_true", help="also Litestar's channels plugin")
    parser.add_argument("--only", choices=["hub", "channels", "baseline"], default=None)
    args = parser.parse_args()
    args.servers = args.servers or (2 if args.n > 9000 else 1)
    args.procs = args.procs or max(1, -(-args.n // 5000))
    args.interval = args.interval or max(0.5, args.n / 10000)
    hard = raise_nofile()
    print(
        f"swarm: {args.n} connections over {args.servers} server process(es) per kind, "
        f"{args.procs} client process(es), {args.addrs} source addresses, file limit {hard}; "
        f"{args.events} events ({args.trigger}) every {args.interval}s",
        flush=True,
    )
    kinds = [args.only] if args.only else ["hub"]
    if not args.only:
        kinds += ["channels"] if args.channels else []
        kinds += ["baseline"] if args.baseline else []
    tmp = Path(tempfile.mkdtemp(prefix="ws-swarm-"))
    redis_url, redis_proc = start_redis(tmp)
    results: dict[str, Result] = {}
    trigger: Trigger | None = None
    try:
        if args.trigger == "booking":
            trigger = BookingTrigger(redis_url, tmp, args.events, len(kinds))
        else:
            trigger = PublishTrigger(redis_url, args.events)
        for kind in kinds:
            results[kind] = run_kind(kind, args, redis_url, tmp, trigger)
    finally:
        if trigger is not None:
            trigger.close()
        redis_proc.terminate()
        redis_proc.wait(10)
    fields: dict[str, Any] = {
        "servers": args.servers, "trigger": args.trigger, "events": args.events
    }  # fmt: skip
    for kind, r in results.items():
        prefix = "" if kind == kinds[0] else f"{kind}_"
        fields[f"{prefix}connections"] = r.connections
        fields[f"{prefix}rss_kb_per_conn"] = round(r.rss_kb_per_conn, 1)
        fields[f"{prefix}fanout_p50_ms"] = round(r.pct(0.5), 1)
        fields[f"{prefix}fanout_p99_ms"] = round(r.pct(0.99), 1)
        fields[f"{prefix}fanout_max_ms"] = round(max(r.fanouts_ms, default=float("nan")), 1)
        fields[f"{prefix}lost_events"] = r.lost
    head = results[kinds[0]]
    for kind in ("baseline", "channels"):
        other = results.get(kind)
        if other is not None and kind != kinds[0]:
            fields[f"rss_ratio_vs_{kind}"] = round(head.rss_kb_per_conn / other.rss_kb_per_conn, 2)
            fields[f"p99_ratio_vs_{kind}"] = round(head.pct(0.99) / other.pct(0.99), 2)
    if "baseline" in results and kinds[0] == "hub":
        fields["rss_ratio"] = fields["rss_ratio_vs_baseline"]
        fields["p99_ratio"] = fields["p99_ratio_vs_baseline"]
    shutil.rmtree(tmp, ignore_errors=True)
    print(" ".join(f"{k}={v}" for k, v in fields.items()))
    return 0 if all(r.lost == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
