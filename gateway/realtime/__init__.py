"""The real-time websocket ``GET /v1/ws``: its protocol messages and the edge that serves it."""

from gateway.realtime.edge import PATH, RealtimeProtocol, bind, unbind

__all__ = ["PATH", "RealtimeProtocol", "bind", "unbind"]
