"""A ``multipart/form-data`` body read as a stream of events, one chunk at a time.

``request.stream()`` feeds python-multipart's incremental parser, so a handler sees each part's
start, its data in pieces, its end and the end of the form as they arrive, and can refuse a
body at its first bad part, before the rest is read. Nothing is buffered beyond one chunk and
the headers of one part.

Limits: a body that is not ``multipart/form-data`` with a boundary is 415
``multipart_required``; past ``limit`` bytes (``Content-Length`` up front, then the bytes
actually received) the caller's ``too_large`` error is raised; a malformed body is 422
``malformed_multipart``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from engine.errors import Invalid, UnsupportedMedia

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from litestar import Request

    from engine.errors import EngineError


class PartStart(msgspec.Struct, frozen=True):
    name: str
    filename: str | None


class PartData(msgspec.Struct, frozen=True):
    data: bytes


class PartEnd(msgspec.Struct, frozen=True):
    pass


class FormEnd(msgspec.Struct, frozen=True):
    pass


Event = PartStart | PartData | PartEnd | FormEnd


def malformed(detail: str = "malformed multipart body") -> Invalid:
    return Invalid(detail, code="malformed_multipart")


def _part_start(headers: dict[bytes, bytes]) -> PartStart:
    # Header bytes are mapped 1:1 through latin-1 and file names read back as UTF-8 (what
    # browsers and HTTP clients send); undecodable bytes become U+FFFD, never an error.
    kind, options = parse_options_header(headers.get(b"content-disposition", b"").decode("latin-1"))
    if kind != b"form-data" or b"name" not in options:
        raise malformed("every part needs Content-Disposition: form-data with a name")
    name = options[b"name"].decode("utf-8", "replace")
    raw_filename = options.get(b"filename")
    filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
    return PartStart(name=name, filename=filename)


async def form_events(
    request: Request[Any, Any, Any], limit: int, too_large: Callable[[], EngineError]
) -> AsyncIterator[Event]:
    """The multipart body as events, read chunk by chunk; ``too_large()`` is raised past
    ``limit`` body bytes."""
    media, options = request.content_type
    boundary = options.get("boundary", "")
    if media != "multipart/form-data" or not boundary:
        raise UnsupportedMedia(
            "the body must be multipart/form-data with a boundary", code="multipart_required"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()

    events: list[Event] = []
    headers: dict[bytes, bytes] = {}
    field, value = bytearray(), bytearray()

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(field).strip().lower()] = bytes(value).strip()
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        events.append(_part_start(headers))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(PartData(bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(PartEnd())

    def on_end() -> None:
        events.append(FormEnd())

    try:
        parser = MultipartParser(
            boundary.encode("latin-1"),
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": on_end,
            },
        )
    except (FormParserError, UnicodeEncodeError):
        raise malformed("bad multipart boundary") from None
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large()
        try:
            parser.write(chunk)
        except FormParserError:
            raise malformed() from None
        for event in events:
            yield event
        events.clear()
    try:
        parser.finalize()
    except FormParserError:
        raise malformed() from None
    for event in events:
        yield event
