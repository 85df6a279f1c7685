"""``GET /v1/ws`` without the upgrade: 426, and the protocol's documentation in ``/schema``.

The websocket itself is served by :mod:`gateway.realtime.edge`, the protocol class
``healthmed serve`` gives uvicorn; websocket traffic never reaches the ASGI app.
"""

from __future__ import annotations

# Response and Problem are runtime imports: Litestar reads handler annotations.
from litestar import Response, get

from gateway.problems import Problem, problem_response, problems

_DESCRIPTION = """\
Websocket (upgrade this GET). A plain GET without the upgrade answers 426.

**Auth.** The first message must be `{"type":"auth","token":"<access token>"}` within
5 s; otherwise (also for a bad, expired or revoked token) the server closes with 4401. The
reply is `{"type":"ready","role","user_id","topics"}`, where `topics` is the private topic
joined automatically (`doctor.<id>.appointments` or `patient.<id>.appointments`).

**Client messages.** `{"type":"subscribe","topic"}` → `{"type":"subscribed","topic"}`;
`{"type":"unsubscribe","topic"}` → `{"type":"unsubscribed","topic"}`;
`{"type":"ping"}` → `{"type":"pong"}`. Errors: `{"type":"error","code","detail"}` with
`bad_message` (malformed JSON, unknown type, larger than 4096 bytes), `unknown_topic`,
`forbidden_topic` (another user's private topic), `too_many_topics` (more than 50).

**Topics.** `doctor.<id>.slots` (anyone authenticated), `doctor.<id>.appointments` (that
doctor), `patient.<id>.appointments` (that patient). Events:
`{"type":"event","topic","event","data","at"}`.

**Catch-up: resync, no replay.** Events carry no sequence number. After (re)connecting and
receiving `subscribed`, a client re-reads `GET /v1/doctors/{id}/slots` and
`GET /v1/appointments` and applies events from then on.

**Limits and closes.** Messages are JSON in text frames (a binary frame is answered with
`bad_message`; text that is not UTF-8 closes with 1007). A message over 64 KiB, or split into
more than 16 frames, closes the connection with 1009 (between 4096 bytes and 64 KiB it is
answered with `bad_message`). 10 messages/s (burst 60; protocol pings and pongs count too),
else close 4429. No client message for 60 s closes 4408: send `ping` meanwhile (protocol
pings are answered but do not count as activity). A client that does not read its frames
fast enough (256 queued) is closed with 1013 (events were dropped: reconnect and resync). The
connection closes with 4401 when its token expires or is revoked (logout, erasure). Shutdown
closes with 1001. Send nothing before the handshake's 101 response: it is discarded.
"""


@get(
    "/v1/ws",
    tags=["real-time"],
    summary="Real-time events (websocket)",
    description=_DESCRIPTION,
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
