"""``GET /v1/ws`` without the upgrade: 426, and the protocol's documentation in ``/schema``.

The websocket itself is served by :mod:`gateway.realtime.edge`, the protocol class
``healthmed serve`` gives uvicorn; websocket traffic never reaches the ASGI app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Response and Problem are runtime imports: Litestar reads handler annotations.
from litestar import Response, get

from engine.config import Settings
from gateway.problems import Problem, problem_response, problems
from gateway.realtime.messages import MAX_FRAGMENTS, max_frame_bytes

if TYPE_CHECKING:
    from litestar import Litestar

PATH = "/v1/ws"


def describe(settings: Settings) -> str:
    """The protocol's documentation in ``/schema``, with the limits ``settings`` gives."""
    s = settings
    return f"""\
Websocket (upgrade this GET). A plain GET without the upgrade answers 426.

**Auth.** The first message must be `{{"type":"auth","token":"<access token>"}}` within
{s.ws_auth_seconds:g} s; otherwise (also for a bad, expired or revoked token) the server closes
with 4401. The reply is `{{"type":"ready","role","user_id","topics"}}`, where `topics` is the
private topic joined automatically (`doctor.<id>.appointments` or `patient.<id>.appointments`).

**Client messages.** `{{"type":"subscribe","topic"}}` → `{{"type":"subscribed","topic"}}`;
`{{"type":"unsubscribe","topic"}}` → `{{"type":"unsubscribed","topic"}}`;
`{{"type":"ping"}}` → `{{"type":"pong"}}`. Errors: `{{"type":"error","code","detail"}}` with
`bad_message` (malformed JSON, unknown type, larger than {s.ws_max_message_bytes} bytes),
`unknown_topic`, `forbidden_topic` (another user's private topic), `too_many_topics` (more
than {s.ws_max_topics}).

**Topics.** `doctor.<id>.slots` (anyone authenticated), `doctor.<id>.appointments` (that
doctor), `patient.<id>.appointments` (that patient). Events:
`{{"type":"event","topic","event","data","at"}}`: `slot.updated` on `doctor.<id>.slots`
(`{{slot_id, doctor_id, start, end, status: "open" | "taken" | "removed"}}`);
`appointment.requested`, `.confirmed`, `.refused`, `.cancelled`, `.expired` (the appointment)
on the participants' topics; `waitlist.offered` on `patient.<id>.appointments`
(`{{entry_id, slot: {{id, start, end}}, hold_expires_at}}`: a freed slot is held for that
waitlist entry until `hold_expires_at`; book it with `POST /v1/appointments`).

**Events.** `slot.updated` on `doctor.<id>.slots`, data `{{slot_id, doctor_id, start, end,
status: "open" | "taken" | "removed"}}`, for every slot whose status changes. On the private
topics, data is the appointment as that party sees it: `appointment.requested` and
`appointment.move_requested` (a confirmed appointment asks to move; its `pending_move` says
where) to the doctor; `appointment.confirmed`, `appointment.cancelled`,
`appointment.expired` and `appointment.rescheduled` (a move applied: the new `slot` and
meeting) to both; `appointment.refused`, `appointment.move_refused` and
`appointment.move_lapsed` (the pending move dropped; the appointment stays where it was) to
the patient.

**Catch-up: resync, no replay.** Events carry no sequence number. After (re)connecting and
receiving `subscribed`, a client re-reads `GET /v1/doctors/{{id}}/slots` and
`GET /v1/appointments` and applies events from then on.

**Limits and closes.** Messages are JSON in text frames (a binary frame is answered with
`bad_message`; text that is not UTF-8 closes with 1007). A message over {_kib(max_frame_bytes(s))},
or split into more than {MAX_FRAGMENTS} frames, closes the connection with 1009 (between
{s.ws_max_message_bytes} bytes and {_kib(max_frame_bytes(s))} it is answered with `bad_message`).
{s.ws_rate_per_second} messages/s (burst {s.ws_rate_burst}; protocol pings and pongs count too),
else close 4429. No client message for {s.ws_idle_seconds} s closes 4408: send `ping` meanwhile
(protocol pings are answered but do not count as activity). A client that does not read its
frames fast enough ({s.ws_queue_size} queued) is closed with 1013 (events were dropped:
reconnect and resync). The connection closes with 4401 when its token expires or is revoked
(logout, erasure). Shutdown closes with 1001. Send nothing before the handshake's 101
response: it is discarded.
"""


def _kib(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"


def document(app: Litestar, settings: Settings) -> None:
    """Write the limits of ``settings`` into ``app``'s OpenAPI document (the handler's own
    description has the declared defaults: a deployment may set others)."""
    paths = app.openapi_schema.paths or {}
    operation = paths[PATH].get if PATH in paths else None
    if operation is not None:
        operation.description = describe(settings)


@get(
    PATH,
    tags=["real-time"],
    summary="Real-time events (websocket)",
    description=describe(Settings()),
    responses=problems(426),
    status_code=426,
    security=[{}],
)
async def realtime_doc() -> Response[Problem]:
    """Without the websocket upgrade: 426 Upgrade Required."""
    return problem_response(
        426,
        "GET /v1/ws is a websocket: connect with Upgrade: websocket",
        "upgrade_required",
        headers={"Upgrade": "websocket"},
    )


route_handlers = [realtime_doc]

__all__ = ["route_handlers"]
