"""The engine's error tree: domain errors, no transport. ``gateway/problems.py`` alone maps
them to HTTP statuses, titles and RFC 9457 bodies (and the websocket edge to close codes).

::

    EngineError                 ours: a bug or broken data (never raised for bad input)
    ├── Invalid                 input that fails validation
    │   ├── PayloadTooLarge     input larger than its limit
    │   └── UnsupportedMedia    content of a type not accepted
    ├── Unauthenticated         no, bad or expired credentials
    ├── Forbidden               authenticated, wrong role for the action
    ├── NotFound                absent, or owned by someone else (never leak existence)
    ├── Conflict                state conflict: slot taken, overlap, duplicate, transition
    ├── RateLimited             too many attempts; ``retry_after`` seconds
    └── Unavailable             a dependency (store, Redis) failed; nothing was changed

Every error carries a stable machine ``code`` and optional structured ``fields``. A new kind
of failure is usually an existing class with a new ``code``; a new class also needs its row in
``gateway/problems.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class EngineError(Exception):
    default_code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, code: str | None = None, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.fields = fields


class Invalid(EngineError):
    default_code = "invalid_input"


def error_entries(exc: EngineError) -> list[dict[str, Any]]:
    """The per-field entries of an error (``{key, message, code}``): its own ``errors``, each
    given the error's ``code`` when it has none, or one entry for its ``field``."""
    entries = exc.fields.get("errors")
    if isinstance(entries, list):
        return [{**e, "code": e.get("code", exc.code)} for e in entries if isinstance(e, dict)]
    field = exc.fields.get("field")
    if isinstance(field, str):
        return [{"key": field, "message": exc.detail, "code": exc.code}]
    return []


class Checks:
    """Several independent checks of one input, reported together: each ``run`` keeps going
    past a failure, and ``done`` raises one ``Invalid`` listing every failed field (one entry
    a field, each with its own ``code``) whose ``code`` and detail are the first failure's.

    A failure without entries of its own is keyed by the ``key`` it was run under."""

    def __init__(self) -> None:
        self._first: Invalid | None = None
        self._entries: list[dict[str, Any]] = []

    def run(self, key: str, check: Callable[[], T]) -> T | None:
        """``check()``'s value, or None (recorded) when it raises ``Invalid``."""
        try:
            return check()
        except Invalid as exc:
            self.fail(key, exc)
            return None

    def fail(self, key: str, exc: Invalid) -> None:
        self._first = self._first or exc
        entries = error_entries(exc)
        self._entries += entries or [{"key": key, "message": exc.detail, "code": exc.code}]

    @property
    def failed(self) -> bool:
        return self._first is not None

    def done(self) -> None:
        """Raise the combined ``Invalid`` if any check failed."""
        first = self._first
        if first is not None:
            fields = {k: v for k, v in first.fields.items() if k not in ("errors", "field")}
            raise Invalid(first.detail, code=first.code, errors=self._entries, **fields)


class PayloadTooLarge(Invalid):
    default_code = "payload_too_large"


class UnsupportedMedia(Invalid):
    default_code = "unsupported_media_type"


class Unauthenticated(EngineError):
    default_code = "unauthenticated"


class Forbidden(EngineError):
    default_code = "forbidden"


class NotFound(EngineError):
    default_code = "not_found"


class Conflict(EngineError):
    default_code = "conflict"


class RateLimited(EngineError):
    default_code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(EngineError):
    default_code = "unavailable"


REFUSALS: tuple[type[EngineError], ...] = (
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
)
"""The errors that refuse a request for what it asks or who asks it (the caller can change
that); the others (:class:`Unavailable`, a bare :class:`EngineError`) are failures on our side."""


__all__ = [
    "REFUSALS",
    "Checks",
    "Conflict",
    "EngineError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMedia",
]
