"""The running app as the websocket edge sees it, bound by the app's lifespan.

uvicorn builds each connection's protocol object itself (``ws=`` names a class), so the
protocol cannot receive the engine through Litestar's dependency injection; the lifespan binds
it here once the engine is up, and unbinds it before the engine closes (new websockets then
get 503).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.realtime._metrics import track
from gateway.realtime._sweep import Sweeper

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.realtime import Hub
    from engine.runtime import Engine


class Binding:
    """What websocket connections of this process share: the engine, its hub, the sweep.

    Built by the app's lifespan (:func:`bind`) once the engine is up; uvicorn builds
    protocols itself, so they find it through :data:`bound`.
    """

    __slots__ = ("engine", "hub", "settings", "sweeper")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.hub: Hub = engine.hub
        self.settings: Settings = engine.settings
        self.sweeper = Sweeper(float(engine.settings.ws_idle_seconds), engine.accounts.revocations)


class _Bound:
    binding: Binding | None = None


bound = _Bound()
"""The binding of the running app, or None while it is not serving websockets."""


def bind(engine: Engine) -> None:
    """Serve websockets with ``engine`` (called by the app's lifespan after start)."""
    bound.binding = Binding(engine)
    track(engine.hub)


def unbind() -> None:
    """Refuse new websockets (503): the app is stopping."""
    bound.binding = None


__all__ = ["Binding", "bind", "bound", "unbind"]
