"""Litestar gateway: the only HTTP and websocket edge of the engine."""

from __future__ import annotations

from gateway.app import create_app

__all__ = ["create_app"]
