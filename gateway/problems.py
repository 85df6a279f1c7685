"""The one mapping from errors to RFC 9457 problem responses (``application/problem+json``).

Engine errors are domain errors (:mod:`engine.errors`): their HTTP status is decided here
(:data:`STATUSES`, by class) and their title by the status; Litestar's own errors (validation,
size limits, routing) are mapped here too, so every error a client sees has ``status``,
``title``, ``detail`` and ``code``. Nothing of the request body is echoed back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState
from redis.exceptions import RedisError

from engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMedia,
    error_entries,
)
from gateway._invalid import body_errors
from gateway.telemetry import REDIS_ERRORS, count_unavailable

if TYPE_CHECKING:
    from litestar import Request

log = logging.getLogger("healthmed.gateway")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
"""What a 503 asks clients to wait before retrying (``Retry-After``): a dependency is down."""

STATUSES: dict[type[EngineError], int] = {
    EngineError: 500,
    Invalid: 422,
    PayloadTooLarge: 413,
    UnsupportedMedia: 415,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    Unavailable: 503,
}
"""The HTTP status of each engine error class; a subclass takes its nearest listed ancestor's."""


def status_of(exc: EngineError) -> int:
    """The HTTP status an engine error answers with."""
    for cls in type(exc).__mro__:
        status = STATUSES.get(cls)
        if status is not None:
            return status
    return 500


_TITLES = {
    400: ("Bad request", "bad_request"),
    401: ("Unauthenticated", "unauthenticated"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "method_not_allowed"),
    409: ("Conflict", "conflict"),
    413: ("Payload too large", "payload_too_large"),
    415: ("Unsupported media type", "unsupported_media_type"),
    422: ("Invalid input", "invalid_input"),
    429: ("Too many requests", "rate_limited"),
    503: ("Service unavailable", "unavailable"),
}


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details with a stable machine ``code``."""

    status: int
    title: str
    detail: str
    code: str
    type: str = "about:blank"
    errors: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    retry_after: int | msgspec.UnsetType = msgspec.UNSET
    checks: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    """``/health/ready``: the state of each dependency."""
    degraded: list[str] | msgspec.UnsetType = msgspec.UNSET
    """``/health/ready``: the parts that cannot serve meanwhile (README "Degraded mode")."""
    appointments: list[str] | msgspec.UnsetType = msgspec.UNSET
    """409 ``confirmed_in_range`` (time off): the confirmed appointments in the way."""


def _problem(status: int, detail: str, code: str | None = None, **extra: Any) -> Problem:
    title, default_code = _TITLES.get(status, ("Error", "error"))
    return Problem(status=status, title=title, detail=detail, code=code or default_code, **extra)


def problem_response(
    status: int,
    detail: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[Problem]:
    return Response(
        _problem(status, detail, code, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_of(exc: EngineError) -> Problem:
    """The problem body of an engine error (also for routes that pre-encode it)."""
    extra: dict[str, Any] = {}
    status = status_of(exc)
    if isinstance(exc, RateLimited):
        extra["retry_after"] = exc.retry_after
    elif status == 503:
        extra["retry_after"] = RETRY_AFTER_SECONDS
        extra.update({k: exc.fields[k] for k in ("checks", "degraded") if k in exc.fields})
    if isinstance(exc, Invalid):
        if entries := error_entries(exc):
            extra["errors"] = entries
    elif "errors" in exc.fields:
        extra["errors"] = exc.fields["errors"]
    if "appointments" in exc.fields:
        extra["appointments"] = list(exc.fields["appointments"])
    return _problem(status, exc.detail, exc.code, **extra)


def engine_error_handler(_: Request[Any, Any, Any], exc: EngineError) -> Response[Problem]:
    status = status_of(exc)
    if status >= 500:
        log.warning("engine error %s: %s", exc.code, exc.detail)
        count_unavailable(exc)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return Response(problem_of(exc), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def validation_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    """Litestar's body and parameter validation: always 422, with every failing field (the
    body's through a second pass, :mod:`gateway._invalid`, since msgspec stops at the first)."""
    errors: list[dict[str, Any]] = []
    if isinstance(exc.extra, list):
        errors = [
            {k: v for k, v in e.items() if k in ("key", "message", "source")}
            for e in exc.extra
            if isinstance(e, dict)
        ]
    if any(e.get("source") == "body" for e in errors):
        body = _body_errors(request)
        if body:
            errors = [e for e in errors if e.get("source") != "body"] + body
    for e in errors:
        e.setdefault("code", "invalid_input")
    detail = exc.detail if exc.detail and exc.detail != "Bad Request" else "invalid request"
    return problem_response(
        HTTP_422_UNPROCESSABLE_ENTITY, detail, "invalid_input", errors=errors or msgspec.UNSET
    )


def _body_errors(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    data = request.route_handler.parsed_data_field
    parsed = ScopeState.from_scope(request.scope).json
    if data is None or parsed is Empty:
        return []
    return body_errors(data.annotation, parsed)


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status == 400:
        # Litestar's 400s are bodies or parameters it could not decode: invalid input (422).
        return problem_response(HTTP_422_UNPROCESSABLE_ENTITY, str(exc.detail), "malformed_body")
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
    # Litestar's headers (the 405's ``Allow``, RFC 9110 section 15.5.6) go out with the problem.
    return problem_response(
        status,
        str(exc.detail) or _TITLES.get(status, ("Error", ""))[0],
        headers=dict(exc.headers) if exc.headers else None,
    )


def redis_error_handler(_: Request[Any, Any, Any], exc: RedisError) -> Response[Problem]:
    """Redis did not answer or failed: the request changed nothing the client can rely on."""
    log.warning("redis error: %s", type(exc).__name__)
    REDIS_ERRORS.inc()
    return problem_response(
        503,
        "the hot-state store is unavailable, retry later",
        "redis_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        retry_after=RETRY_AFTER_SECONDS,
    )


def recursion_handler(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Problem]:
    """A body nested deeper than the JSON decoder can follow is malformed input."""
    return problem_response(
        HTTP_422_UNPROCESSABLE_ENTITY, "the body is nested too deeply", "malformed_body"
    )


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "internal error", "internal")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    EngineError: engine_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_exception_handler,
    RedisError: redis_error_handler,
    RecursionError: recursion_handler,
    Exception: internal_error_handler,
}


_EXAMPLE_DETAILS = {
    401: ("a bearer token is required", "missing_token"),
    403: ("this is for doctors", "wrong_role"),
    404: ("appointment not found", "not_found"),
    405: ("Method Not Allowed", "method_not_allowed"),
    409: ("the slot is no longer open", "slot_unavailable"),
    413: ("the upload is larger than the record limit", "record_too_large"),
    415: ("the file type is not accepted", "unsupported_media_type"),
    426: ("GET /v1/ws is a websocket: connect with Upgrade: websocket", "upgrade_required"),
    429: ("too many failed attempts, retry later", "too_many_attempts"),
    500: ("the stored record failed its integrity check", "record_integrity_error"),
    503: ("the hot-state store is unavailable, retry later", "redis_unavailable"),
}


def _example(status: int) -> Example:
    """A real problem body of ``status``, as the server sends it (not generated text)."""
    if status == 422:
        value: dict[str, Any] = {
            "status": 422,
            "title": "Invalid input",
            "detail": "crm must be 4 to 8 digits",
            "code": "invalid_crm",
            "type": "about:blank",
            "errors": [
                {"key": "crm", "message": "crm must be 4 to 8 digits", "code": "invalid_crm"},
                {"key": "uf", "message": "uf must be a Brazilian state code such as SP",
                 "code": "invalid_uf"},
            ],
        }  # fmt: skip
    else:
        detail, code = _EXAMPLE_DETAILS.get(status, ("error", "error"))
        title = _TITLES.get(status, ("Error", ""))[0]
        value = {"status": status, "title": title, "detail": detail, "code": code}
        value["type"] = "about:blank"
        if status == 429:
            value["retry_after"] = 60
    return Example(summary=value["code"], value=value)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the problem responses a route can return, each with a real
    example."""
    return {
        s: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_TITLES.get(s, ("Error", ""))[0],
            generate_examples=False,
            examples=[_example(s)],
        )
        for s in statuses
    }


__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "STATUSES",
    "Problem",
    "problem_of",
    "problem_response",
    "problems",
    "status_of",
]
