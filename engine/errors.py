"""The engine's error tree. The gateway maps it to RFC 9457 problems in one place.

::

    EngineError                 500  internal (never raised for bad input)
    ├── Invalid                 422  input that fails validation
    │   ├── PayloadTooLarge     413
    │   └── UnsupportedMedia    415
    ├── Unauthenticated         401  no, bad or expired credentials
    ├── Forbidden               403  authenticated, wrong role for the action
    ├── NotFound                404  absent, or owned by someone else (never leak existence)
    ├── Conflict                409  state conflict: slot taken, overlap, duplicate, transition
    ├── RateLimited             429  too many attempts; ``retry_after`` seconds
    └── Unavailable             503  a dependency (store, Redis) failed; nothing was changed

Every error carries a stable machine ``code`` and optional structured ``fields``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EngineError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    default_code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, code: str | None = None, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.fields = fields


class Invalid(EngineError):
    status = 422
    title = "Invalid input"
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


class PayloadTooLarge(Invalid):
    status = 413
    title = "Payload too large"
    default_code = "payload_too_large"


class UnsupportedMedia(Invalid):
    status = 415
    title = "Unsupported media type"
    default_code = "unsupported_media_type"


class Unauthenticated(EngineError):
    status = 401
    title = "Unauthenticated"
    default_code = "unauthenticated"


class Forbidden(EngineError):
    status = 403
    title = "Forbidden"
    default_code = "forbidden"


class NotFound(EngineError):
    status = 404
    title = "Not found"
    default_code = "not_found"


class Conflict(EngineError):
    status = 409
    title = "Conflict"
    default_code = "conflict"


class RateLimited(EngineError):
    status = 429
    title = "Too many requests"
    default_code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(EngineError):
    status = 503
    title = "Service unavailable"
    default_code = "unavailable"


__all__ = [
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
