"""Locust scenarios: patients and doctors on the real API, websockets included.

    healthmed seed --doctors 40 --patients 2000 --past 500 --out var/seed-credentials.json
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 \\
        --credentials var/seed-credentials.json
    # a shape: -f loadtest/locustfile.py,loadtest/shape_rush.py (or shape_steady.py)

Users (weights on the command line, ``--patient-weight``/``--doctor-weight``, or in the web
UI with ``--class-picker``; ``Doctor`` users are pinned to ``--doctors`` instances, one per seeded
doctor, so that every doctor a patient books has someone deciding):

* ``Patient``: starts with its seeded token pair (``--login-fraction`` of them log in with the
  password instead: Argon2id costs tens of milliseconds of server CPU a login), opens a
  websocket (auth, its own topic joined on auth), then: searches (specialty, distance, rating,
  second page), opens an agenda (subscribes to its ``doctor.<id>.slots`` topic and leaves the
  previous agenda's, as the web client does; ``--agenda-topics`` keeps more), books
  (``--hot-share`` of bookings go for the one hot doctor, the rest spread out) and waits for
  the decision event, sometimes cancels a confirmed appointment with a justification, rates
  its past consultation once (seeded with ``--past``), sometimes uploads a small record and
  shares it with a doctor.
* ``Doctor``: starts with its token pair, publishes a week of slots by weekly rule, keeps a
  websocket, and accepts (or, one in five, refuses) each ``appointment.requested`` within
  ``--decide-seconds``; it also decides requests that arrived before its websocket did.

Websocket statistics are locust entries of type ``WS``: ``connect``, ``auth``, ``slot event``
(booking request sent → the ``slot.updated`` "taken" on the agenda topic) and ``decision
event`` (booking response → ``appointment.confirmed``/``refused`` on the patient's topic).
An expected event that does not arrive within ``--event-timeout`` seconds is a failure of
that entry. A 409 of a booking (the slot was taken, or overlaps the patient's own) is the
expected outcome of a race, not a failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import locust.runners
import websocket
from locust import FastHttpUser, argument_parser, between, constant, events, task
from locust.runners import WorkerRunner

# locust 2.47's worker rebuilds its whole argument parser once per option of every spawn
# message (runners.py, WorkerRunner.handle_message): seconds of CPU on a busy machine, long
# enough to miss heartbeats and be dropped by the master. The defaults never change: build
# them once. A worker also gets 10 heartbeats of slack instead of 3 on a machine it shares
# with the server under test.
_default_args = argument_parser.default_args_dict()
argument_parser.default_args_dict = lambda: _default_args
locust.runners.HEARTBEAT_LIVENESS = 10

ROOT = Path(__file__).resolve().parent.parent
JUSTIFICATION = "Imprevisto no trabalho, preciso remarcar a consulta."


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--credentials",
        default=os.environ.get("HEALTHMED_SEED_FILE", str(ROOT / "var/seed-credentials.json")),
        help="the file healthmed seed wrote",
    )
    parser.add_argument("--patient-weight", type=int, default=50)
    parser.add_argument("--doctor-weight", type=int, default=1)
    parser.add_argument(
        "--doctors", type=int, default=0, help="Doctor users (0: one per seeded doctor)"
    )
    parser.add_argument("--hot-share", type=float, default=0.2, include_in_web_ui=True)
    parser.add_argument("--login-fraction", type=float, default=0.02, include_in_web_ui=True)
    parser.add_argument("--decide-seconds", type=float, default=2.0, include_in_web_ui=True)
    parser.add_argument("--event-timeout", type=float, default=30.0, include_in_web_ui=True)
    parser.add_argument(
        "--patient-wait", default="1,4", help="seconds between a patient's actions: MIN,MAX"
    )
    parser.add_argument(
        "--agenda-topics",
        type=int,
        default=1,
        include_in_web_ui=True,
        help="agenda topics a patient stays subscribed to: 1 is the web client (the agenda on "
        "screen; it unsubscribes on leaving); each one more multiplies the slot events every "
        "patient receives",
    )
    parser.add_argument(
        "--http-close",
        action="store_true",
        help="close each HTTP connection after its request (20,000 users: file descriptors "
        "and loopback ports cannot also hold a keep-alive connection per user)",
    )
    parser.add_argument("--locust-workers", type=int, default=1, help="worker processes")
    parser.add_argument("--summary", default="", help="write the run's figures here (JSON)")


_credentials: dict[str, Any] = {}
_searched: dict[str, list[Any]] = {"specialties": [], "places": []}
"""What patients search for: the seeded doctors' specialties and cities (from the credentials
file, so a search finds someone whatever the seed made)."""
_counters = {"patient": itertools.count(), "doctor": itertools.count()}
_stopping = gevent.event.Event()
"""Set once locust stops the users (the run's time limit, or stop in the web UI)."""


@events.test_start.add_listener
def _started(**_: Any) -> None:
    _stopping.clear()


@events.test_stopping.add_listener
def _stopped(**_: Any) -> None:
    _stopping.set()


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    path = Path(options.credentials)
    if path.exists():
        _credentials.update(json.loads(path.read_bytes()))
    seeded = _credentials.get("doctors", [])
    _searched["specialties"] = sorted({d["specialty"] for d in seeded})
    _searched["places"] = sorted({(d["lat"], d["lon"]) for d in seeded})
    low, _, high = options.patient_wait.partition(",")
    Patient.wait_time = between(float(low), float(high or low))
    Patient.weight = max(0, options.patient_weight)
    Doctor.weight = max(0, options.doctor_weight)
    doctors = len(_credentials.get("doctors", []))
    Doctor.fixed_count = options.doctors or doctors


def _slot(role: str, environment: Any) -> int:
    """This user's index among its role's users, unique across the worker processes."""
    runner = environment.runner
    index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
    workers = max(1, environment.parsed_options.locust_workers)
    return next(_counters[role]) * workers + index


def _fire(
    environment: Any, name: str, began: float, error: str | None = None, ended: float = 0
) -> None:
    environment.events.request.fire(
        request_type="WS",
        name=name,
        response_time=max(0.0, ((ended or time.monotonic()) - began) * 1000),
        response_length=0,
        exception=Exception(error) if error else None,
        context={},
    )


class Socket:
    """One websocket of a simulated user, read by a greenlet; events go to ``on_event``."""

    def __init__(self, user: ApiUser) -> None:
        self.user = user
        self.conn: websocket.WebSocket | None = None
        self.topics: list[str] = []
        self.reader: gevent.Greenlet | None = None

    def open(self) -> bool:
        env = self.user.environment
        url = self.user.host.replace("http", "ws", 1) + "/v1/ws"
        began = time.monotonic()
        try:
            self.conn = websocket.create_connection(url, timeout=30)
        except Exception as exc:
            _fire(env, "connect", began, f"{type(exc).__name__}: {exc}")
            return False
        _fire(env, "connect", began)
        began = time.monotonic()
        try:
            self.conn.send(json.dumps({"type": "auth", "token": self.user.access}))
            ready = json.loads(self.conn.recv())
            if ready.get("type") != "ready":
                raise RuntimeError(f"auth answered {ready.get('type')}")
        except Exception as exc:
            _fire(env, "auth", began, f"{type(exc).__name__}: {exc}")
            self.close()
            return False
        _fire(env, "auth", began)
        self.conn.settimeout(None)
        self.reader = gevent.spawn(self._read)
        return True

    def _read(self) -> None:
        conn = self.conn
        while conn is not None:
            try:
                raw = conn.recv()
            except Exception:
                return
            if not raw:
                return
            message = json.loads(raw)
            if message.get("type") == "event":
                self.user.on_event(message)

    def subscribe(self, topic: str) -> None:
        if self.conn is None or topic in self.topics:
            return
        if len(self.topics) >= max(1, self.user.environment.parsed_options.agenda_topics):
            old = self.topics.pop(0)
            self.send({"type": "unsubscribe", "topic": old})
        self.topics.append(topic)
        self.send({"type": "subscribe", "topic": topic})

    def send(self, message: dict[str, Any]) -> None:
        try:
            if self.conn is not None:
                self.conn.send(json.dumps(message))
        except Exception:
            self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class ApiUser(FastHttpUser):
    abstract = True
    role = ""
    account: dict[str, Any]
    access = ""
    refresh = ""

    def headers(self) -> dict[str, str]:
        if self.environment.parsed_options.http_close:
            return {"Authorization": f"Bearer {self.access}", "Connection": "close"}
        return {"Authorization": f"Bearer {self.access}"}

    def call(self, method: str, path: str, name: str | None = None, **kw: Any) -> Any:
        """One API call as this user; a 401 refreshes the pair once and retries. ``ok`` are
        the statuses that count as success (besides 2xx)."""
        ok = kw.pop("ok", ())
        for attempt in range(2):
            with self.client.request(
                method, path, name=name or path, headers=self.headers(), catch_response=True, **kw
            ) as r:
                if r.status_code == 401 and attempt == 0 and self.refresh_pair():
                    r.success()
                    continue
                if r.status_code == 0 and _stopping.is_set():
                    # no answer because locust itself stopped this user mid-request (at the
                    # run's end): not the server's failure; its own row in the table.
                    r.request_meta["name"] = f"{r.request_meta['name']} (cut off by the stop)"
                    r.success()
                elif 200 <= r.status_code < 300 or r.status_code in ok:
                    r.success()
                else:
                    r.failure(f"{r.status_code} {(r.text or '')[:120]}")
                return r
        return None

    def refresh_pair(self) -> bool:
        with self.client.post(
            "/v1/auth/refresh",
            json={"refresh_token": self.refresh},
            name="/v1/auth/refresh",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}")
                return False
            body = r.json()
            self.access, self.refresh = body["access_token"], body["refresh_token"]
            return True

    def take_account(self) -> bool:
        accounts = _credentials.get(f"{self.role}s", [])
        if not accounts:
            return False
        index = _slot(self.role, self.environment)
        self.account = accounts[index % len(accounts)]
        self.access = self.account["access_token"]
        self.refresh = self.account["refresh_token"]
        if random.random() < self.environment.parsed_options.login_fraction:
            self.login()
        return True

    def login(self) -> None:
        if self.role == "doctor":
            path = "/v1/auth/doctors/login"
            body = {"crm": self.account["crm"], "uf": self.account["uf"]}
        else:
            path, body = "/v1/auth/patients/login", {"email": self.account["email"]}
        body["password"] = _credentials["password"]
        with self.client.post(path, json=body, name=path, catch_response=True) as r:
            if r.status_code == 200:
                data = r.json()
                self.access, self.refresh = data["access_token"], data["refresh_token"]
            else:
                r.failure(f"{r.status_code} {(r.text or '')[:120]}")

    def on_event(self, message: dict[str, Any]) -> None:
        raise NotImplementedError


class Patient(ApiUser):
    weight = 50
    wait_time = between(1, 4)
    role = "patient"

    def on_start(self) -> None:
        self.pending: dict[str, float] = {}  # appointment id -> booking response time
        self.slot_wait: dict[str, float] = {}  # slot id -> booking request time
        self.taken: dict[str, float] = {}  # slot id -> when its "taken" event arrived
        self.confirmed: list[str] = []
        self.rated = False
        self.socket = Socket(self)
        if not self.take_account():
            self.stop()
            return
        self.socket.open()

    def on_stop(self) -> None:
        deadline = time.monotonic() + self.environment.parsed_options.event_timeout
        while (self.pending or self.slot_wait) and time.monotonic() < deadline:
            gevent.sleep(0.2)
            self.expire_waits()
        self.expire_waits(everything=True)
        self.socket.close()

    def on_event(self, message: dict[str, Any]) -> None:
        event, data = message.get("event"), message.get("data") or {}
        if event == "slot.updated" and data.get("status") == "taken":
            began = self.slot_wait.pop(data.get("slot_id", ""), None)
            if began is not None:
                _fire(self.environment, "slot event", began)
            elif len(self.taken) < 1000:  # it may beat the booking's own response
                self.taken[data.get("slot_id", "")] = time.monotonic()
        elif event in ("appointment.confirmed", "appointment.refused"):
            began = self.pending.pop(data.get("id", ""), None)
            if began is not None:
                _fire(self.environment, "decision event", began)
                if event == "appointment.confirmed":
                    self.confirmed.append(data["id"])

    def expire_waits(self, everything: bool = False) -> None:
        limit = self.environment.parsed_options.event_timeout
        now = time.monotonic()
        for waits, name in ((self.pending, "decision event"), (self.slot_wait, "slot event")):
            for key, began in list(waits.items()):
                if everything or now - began > limit:
                    del waits[key]
                    _fire(self.environment, name, began, "expected event did not arrive")

    def doctors(self) -> list[dict[str, Any]]:
        return _credentials.get("doctors", [])[: max(1, Doctor.fixed_count)]

    @task(5)
    def search(self) -> None:
        self.expire_waits()
        lat, lon = random.choice(_searched["places"])
        params: dict[str, Any] = {"specialty": random.choice(_searched["specialties"]), "limit": 10}
        if random.random() < 0.7:
            params |= {"lat": lat, "lon": lon, "max_km": random.choice([10, 50, 500])}
        if random.random() < 0.3:
            params["min_rating"] = random.choice([1, 3, 4])
        r = self.call("GET", "/v1/doctors", params=params)
        if r is not None and r.status_code == 200 and r.json().get("next_cursor"):
            cursor = r.json()["next_cursor"]
            self.call(
                "GET",
                "/v1/doctors",
                name="/v1/doctors [next page]",
                params={**params, "cursor": cursor},
            )

    def agenda(self, doctor_id: str) -> list[dict[str, Any]]:
        self.socket.subscribe(f"doctor.{doctor_id}.slots")
        r = self.call("GET", f"/v1/doctors/{doctor_id}/slots", name="/v1/doctors/{id}/slots")
        if r is None or r.status_code != 200:
            return []
        return [s for s in r.json()["slots"] if s["status"] == "open"]

    @task(3)
    def look(self) -> None:
        self.agenda(random.choice(self.doctors())["id"])

    @task(3)
    def book(self) -> None:
        self.expire_waits()
        hot = _credentials.get("hot_doctor")
        if hot and random.random() < self.environment.parsed_options.hot_share:
            doctor_id = hot
        else:
            doctor_id = random.choice(self.doctors())["id"]
        open_slots = self.agenda(doctor_id)
        if not open_slots:
            return
        slot = random.choice(open_slots[:10])
        began = time.monotonic()
        r = self.call("POST", "/v1/appointments", json={"slot_id": slot["id"]}, ok=(409,))
        arrived = self.taken.pop(slot["id"], None)
        self.taken.clear()
        if r is not None and r.status_code == 201 and self.socket.conn is not None:
            self.pending[r.json()["id"]] = time.monotonic()
            if arrived is not None:
                _fire(self.environment, "slot event", began, ended=arrived)
            else:
                self.slot_wait[slot["id"]] = began

    @task(1)
    def cancel(self) -> None:
        if self.confirmed and random.random() < 0.3:
            appointment_id = self.confirmed.pop(0)
            self.call(
                "POST",
                f"/v1/appointments/{appointment_id}/cancel",
                name="/v1/appointments/{id}/cancel",
                json={"justification": JUSTIFICATION},
            )

    @task(1)
    def rate(self) -> None:
        past = self.account.get("past_appointment")
        if past and not self.rated:
            self.rated = True
            self.call(
                "POST",
                f"/v1/appointments/{past}/rating",
                name="/v1/appointments/{id}/rating",
                json={"stars": random.randint(3, 5), "comment": "Atendimento atencioso."},
                ok=(409,),  # rated already in an earlier run on the same seed
            )

    @task(1)
    def upload_and_share(self) -> None:
        if random.random() > 0.3:
            return
        content = f"Resultado de exame {random.randint(1, 10**6)}\nGlicose: 92 mg/dL\n"
        r = self.call(
            "POST",
            "/v1/me/records",
            files={"file": ("exame.txt", content.encode(), "text/plain")},
            data={"kind": "exam", "group": "check-up"},
        )
        if r is None or r.status_code != 201:
            return
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
        self.call(
            "POST",
            "/v1/me/shares",
            json={
                "doctor_id": random.choice(self.doctors())["id"],
                "record_ids": [r.json()["id"]],
                "expires_at": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )


class Doctor(ApiUser):
    weight = 1
    fixed_count = 0
    wait_time = constant(0)  # work() paces itself: a decision is due within seconds
    role = "doctor"

    def on_start(self) -> None:
        self.requests: list[tuple[float, str]] = []  # (decide at, appointment id)
        self.socket = Socket(self)
        if not self.take_account():
            self.stop()
            return
        self.publish()
        self.socket.open()
        self.catch_up()

    def on_stop(self) -> None:
        self.catch_up(now=True)
        self.decide(everything=True)
        self.socket.close()

    def publish(self) -> None:
        """A week of slots by weekly rule, after the seeded fortnight; 409 if an earlier run
        already published that week (slots never overlap)."""
        first = dt.date.today() + dt.timedelta(days=15 + random.randint(0, 60))
        rule = {
            "from": first.isoformat(),
            "to": (first + dt.timedelta(days=6)).isoformat(),
            "weekdays": [1, 2, 3, 4, 5],
            "start_time": "08:00",
            "end_time": "12:00",
            "timezone": "America/Sao_Paulo",
        }
        self.call("POST", "/v1/me/slots", json={"rule": rule}, ok=(409,))

    def catch_up(self, now: bool = False) -> None:
        """Requests that arrived while no websocket listened (before start)."""
        r = self.call(
            "GET",
            "/v1/appointments",
            name="/v1/appointments?status=requested",
            params={"status": "requested", "limit": 100},
        )
        if r is not None and r.status_code == 200:
            for item in r.json()["items"]:
                self.requests.append((0.0 if now else time.monotonic(), item["id"]))

    def on_event(self, message: dict[str, Any]) -> None:
        if message.get("event") == "appointment.requested":
            think = random.uniform(0.2, self.environment.parsed_options.decide_seconds)
            self.requests.append((time.monotonic() + think, message["data"]["id"]))

    def decide(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [r for r in self.requests if everything or r[0] <= now]
        self.requests = [r for r in self.requests if r not in due]
        for _, appointment_id in due:
            verb = "refuse" if random.random() < 0.2 else "accept"
            body = {"reason": "Agenda indisponível."} if verb == "refuse" else None
            self.call(
                "POST",
                f"/v1/appointments/{appointment_id}/{verb}",
                name=f"/v1/appointments/{{id}}/{verb}",
                json=body,
                ok=(409,),  # cancelled or expired meanwhile
            )

    @task
    def work(self) -> None:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            self.decide()
            gevent.sleep(0.1)
        if self.socket.conn is None:
            self.socket.open()


@events.quitting.add_listener
def _summary(environment: Any, **_: Any) -> None:
    """On the master (or a single process), once the workers' last reports are in: the HTTP
    figures apart from the WS entries."""
    options = environment.parsed_options
    if options is None or not options.summary or isinstance(environment.runner, WorkerRunner):
        return
    from locust.stats import StatsEntry

    http = StatsEntry(environment.stats, "http", "", use_response_times_cache=False)
    ws: dict[str, dict[str, int]] = {}
    for (name, method), entry in environment.stats.entries.items():
        if method == "WS":
            ws[name] = {"count": entry.num_requests, "failures": entry.num_failures}
        else:
            http.extend(entry)
    elapsed = max(1e-9, http.last_request_timestamp - http.start_time) if http.num_requests else 1
    summary = {
        "requests": http.num_requests,
        "failures": http.num_failures,
        "rps": http.num_requests / elapsed,
        "p50_ms": http.get_response_time_percentile(0.5),
        "p95_ms": http.get_response_time_percentile(0.95),
        "p99_ms": http.get_response_time_percentile(0.99),
        "ws": ws,
        "errors": [
            {"name": e.name, "method": e.method, "error": e.error, "count": e.occurrences}
            for e in environment.stats.errors.values()
        ],
    }
    Path(options.summary).write_text(json.dumps(summary, indent=2))
