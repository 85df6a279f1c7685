"""Engine errors are domain errors: gateway/problems.py alone gives them HTTP statuses, and an
Idempotency-Key's refusal is stored by its kind (records of before by their status)."""

from __future__ import annotations

import pytest

from engine.booking._idempotency import Outcome, replay, replayable_kind
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
)
from engine.records import RecordIntegrityError
from gateway.problems import problem_of, status_of
from gateway.realtime.messages import close_code


class _Subconflict(Conflict):
    pass


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (EngineError("x"), 500),
        (Invalid("x"), 422),
        (PayloadTooLarge("x"), 413),
        (UnsupportedMedia("x"), 415),
        (Unauthenticated("x"), 401),
        (Forbidden("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (_Subconflict("x"), 409),
        (RateLimited("x", retry_after=3), 429),
        (Unavailable("x"), 503),
        (RecordIntegrityError("x"), 500),
    ],
)
def test_each_error_class_has_its_status_in_the_gateway(exc: EngineError, status: int) -> None:
    assert status_of(exc) == status
    assert problem_of(exc).status == status
    assert close_code(exc) == 4000 + status


def test_engine_errors_carry_no_http_status_nor_title() -> None:
    for cls in (EngineError, Invalid, Conflict, Unavailable, RecordIntegrityError):
        assert not hasattr(cls, "status")
        assert not hasattr(cls, "title")


def test_a_refusal_is_replayed_as_the_same_kind() -> None:
    for exc in (Conflict("taken", code="slot_unavailable"), Invalid("bad", code="slot_in_past"),
                NotFound("gone", code="slot_not_found"), Forbidden("no", code="wrong_role"),
                _Subconflict("stale", code="slot_unavailable")):  # fmt: skip
        kind = replayable_kind(exc)
        assert kind is not None
        with pytest.raises(EngineError) as info:
            replay(Outcome.of_error(exc, kind).encode())
        assert status_of(info.value) == status_of(exc)
        assert (info.value.code, info.value.detail) == (exc.code, exc.detail)


def test_failures_and_size_refusals_are_not_a_keys_outcome() -> None:
    for exc in (Unavailable("down"), EngineError("bug"), PayloadTooLarge("big"),
                RateLimited("slow down", retry_after=1), Unauthenticated("who")):  # fmt: skip
        assert replayable_kind(exc) is None


def test_a_record_stored_with_its_http_status_still_replays() -> None:
    """Records written before the kind was stored (they live 24 h) carry the status."""
    with pytest.raises(Conflict) as info:
        replay(b'{"status":409,"code":"slot_unavailable","detail":"the slot is not open"}')
    assert info.value.code == "slot_unavailable"
    with pytest.raises(Invalid):
        replay(b'{"status":422,"code":"slot_in_past","detail":"the slot starts in the past"}')
