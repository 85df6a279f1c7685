"""The OpenAPI patterns say what the engine's checks accept: whatever a check accepts matches
its pattern (a client following the schema is never wrong about a valid value), and where the
pattern is the whole rule, whatever matches is accepted."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.accounts import validators
from engine.accounts.models import CRM_PATTERN, SPECIALTY_PATTERN, UF_PATTERN
from engine.booking import _rules
from engine.booking._model import _CLOCK, _DATE
from engine.errors import Invalid
from engine.records import GROUP_PATTERN, KIND_PATTERN
from engine.records._model import check_group, check_kind

# Near misses: digits, letters of both cases, the separators, spaces and look-alikes whose
# case mapping lands in ASCII (the Kelvin sign, the long s).
TEXT = st.text(
    alphabet=st.sampled_from("0123456789aAsSpPkK-._:/ \t\u212a\u017f\u00e9+"), max_size=12
)


def _accepts(check: Callable[[str], Any], value: str) -> bool:
    try:
        check(value)
    except Invalid:
        return False
    return True


CASES: list[tuple[str, str, Callable[[str], Any], bool]] = [
    # (name, pattern, check, the pattern is the whole rule)
    ("crm", CRM_PATTERN, validators.crm, True),
    ("uf", UF_PATTERN, validators.uf, True),
    ("specialty", SPECIALTY_PATTERN, validators.specialty, False),  # + at most 64 characters
    ("group", GROUP_PATTERN, check_group, False),  # + at most 64 characters
    ("kind", KIND_PATTERN, lambda v: check_kind(v, required=False), True),
    ("clock", _CLOCK, lambda v: _rules._clock(v, "start_time"), True),
    ("date", _DATE, lambda v: _rules._date(v, "from"), False),  # + a real calendar day
]


@pytest.mark.parametrize(("name", "pattern", "check", "exact"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=300, deadline=None)
@given(value=TEXT)
@example(value=" sp ")
@example(value="\u017fp")
@example(value="\u212a")
@example(value="0930")
@example(value="2026-12-01")
@example(value="20261201")
def test_the_pattern_matches_what_the_check_accepts(
    name: str, pattern: str, check: Callable[[str], Any], exact: bool, value: str
) -> None:
    matches = re.search(pattern, value) is not None
    accepted = _accepts(check, value)
    if accepted:
        assert matches, (name, value)
    if exact:
        assert accepted == matches, (name, value)
