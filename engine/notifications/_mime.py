"""The ``email`` policy messages are built with: the standard library's default policy, at a
fraction of its cost per message.

Building and writing one message with ``email.policy.default`` cost about 1.3 ms of CPU (2.4 ms
with an invitation), on the event loop that serves requests, twice per booking: every header
set is parsed into a header object at once (the registry makes a new class for each one, and
a reference cycle the garbage collector has to find), every ``Content-Type`` is parsed again
each time the builder or the generator reads it, and every header is refolded from its parse
tree when written. :data:`POLICY` changes where that work happens, not what is written:

* a header set to a short single-line ASCII value is stored as that text, as the parser
  stores the headers of a received message, and written as it is (refolding such a value
  gives it back unchanged). Any other value (non-ASCII: a name, a subject in Portuguese;
  longer than a line) is parsed and refolded as before, with RFC 2047 encoded words. CR and
  LF are refused as before (no header injection);
* a stored text is parsed when it is read (``message["To"]``), through a memo of the values
  that recur from message to message (``Content-Type: text/plain; charset="utf-8"``, the
  sender), each header class made once.

Messages parsed back with ``email.policy.default`` read the same (tests/unit and
tests/integration read them back).
"""

from __future__ import annotations

import secrets
from email.headerregistry import BaseHeader, HeaderRegistry
from email.policy import EmailPolicy
from typing import TYPE_CHECKING, Any

from engine.cache import BoundedCache

if TYPE_CHECKING:
    from collections.abc import Iterable

_MEMO_SIZE = 512
"""Distinct header values remembered parsed (the ones that recur are a few dozen)."""


class _Headers(HeaderRegistry):
    """The standard registry, each header class made once, recurring values parsed once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: BoundedCache[tuple[str, str], BaseHeader] = BoundedCache(_MEMO_SIZE)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str):
            return super().__call__(name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:  # header objects are immutable: one may serve every message
            header = self._parsed.put(key, super().__call__(name, value))
        return header


class _Policy(EmailPolicy):
    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if (
            isinstance(value, str)
            and not hasattr(value, "name")
            and value.isascii()
            and len(value.splitlines()) <= 1
            and "\r" not in value
            and "\n" not in value
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
        ):
            return (name, value)
        result: tuple[str, Any] = super().header_store_parse(name, value)
        return result


POLICY = _Policy(header_factory=_Headers())
"""``email.policy.default`` with the header work moved (see the module docstring)."""


def boundary(parts: Iterable[str]) -> str:
    """A MIME boundary found in none of ``parts``. The generator would find one itself, by
    compiling a regular expression per message; this one is random (unguessable: a
    justification written by a user cannot contain it) and checked by substring."""
    texts = list(parts)
    while True:
        candidate = f"=_hm_{secrets.token_hex(16)}"
        if not any(candidate in text for text in texts):
            return candidate
