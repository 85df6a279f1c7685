"""The real-time websocket ``GET /v1/ws``: its protocol messages and the edge that serves it.

``edge`` (the asyncio protocol uvicorn runs per connection), ``messages`` (the wire shapes,
topics and close codes), ``_binding`` (the engine, bound by the app's lifespan), ``_sweep``
(idle, expiry and revocation checks) and ``_metrics`` (``healthmed_ws_*`` series).
"""

from gateway.realtime._binding import bind, unbind
from gateway.realtime.edge import PATH, RealtimeProtocol

__all__ = ["PATH", "RealtimeProtocol", "bind", "unbind"]
