"""The websocket's documentation in ``/schema`` states the limits the app applies."""

from __future__ import annotations

from litestar import Litestar

from engine.config import Settings
from gateway.routes import realtime


def _ws_description(settings: Settings) -> str:
    """The description ``create_app`` gives ``GET /v1/ws`` (it calls ``document`` likewise)."""
    app = Litestar(route_handlers=realtime.route_handlers)
    realtime.document(app, settings)
    paths = app.openapi_schema.paths or {}
    operation = paths["/v1/ws"].get
    assert operation is not None
    return operation.description or ""


def test_the_websocket_docs_carry_the_configured_limits() -> None:
    """Limits set for a deployment are the ones its /schema describes, not the defaults."""
    text = " ".join(
        _ws_description(
            Settings(
                ws_max_topics=7,
                ws_idle_seconds=30,
                ws_max_message_bytes=32 * 1024,
                ws_rate_per_second=4,
                ws_rate_burst=9,
                ws_queue_size=100,
                ws_auth_seconds=2.5,
            )
        ).split()
    )
    assert "too_many_topics` (more than 7)" in text
    assert "No client message for 30 s closes 4408" in text
    assert "larger than 32768 bytes" in text
    assert "A message over 128 KiB" in text  # four times the largest client message
    assert "4 messages/s (burst 9;" in text
    assert "(100 queued)" in text
    assert "within 2.5 s" in text


def test_the_default_websocket_docs_carry_the_declared_defaults() -> None:
    """With the defaults, the document says 50 topics, 4096 bytes, 64 KiB and 16 frames."""
    text = " ".join(_ws_description(Settings()).split())
    for phrase in (
        "(more than 50)",
        "larger than 4096 bytes",
        "A message over 64 KiB, or split into more than 16 frames",
        "10 messages/s (burst 60;",
        "No client message for 60 s",
        "(256 queued)",
        "within 5 s",
    ):
        assert phrase in text, phrase
