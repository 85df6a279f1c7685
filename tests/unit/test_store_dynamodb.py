"""DynamoDB adapter logic that moto cannot provoke: transaction conflicts, key-range algebra."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from engine.store import ConditionFailed, Item, Put, StoreUnavailable
from engine.store._dynamodb import DynamoDBStore
from engine.store._port import prefix_end as _successor


def cancelled(*codes: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


class FakeClient:
    """Answers TransactWriteItems from a script of errors, then succeeds."""

    def __init__(self, *errors: ClientError) -> None:
        self.errors = list(errors)
        self.tokens: list[str] = []

    async def transact_write_items(self, **request: Any) -> dict[str, Any]:
        self.tokens.append(request["ClientRequestToken"])
        if self.errors:
            raise self.errors.pop(0)
        return {}


def store_on(client: FakeClient) -> DynamoDBStore:
    return DynamoDBStore("t", client, contextlib.AsyncExitStack())  # type: ignore[arg-type]


OPS = [Put(item=Item(pk="A", sk="S")), Put(item=Item(pk="B", sk="S"), expect="absent")]


async def test_transaction_conflict_is_retried_with_a_new_token() -> None:
    """A TransactionConflict wrote nothing, so the transaction is sent again, and succeeds."""
    client = FakeClient(cancelled("None", "TransactionConflict"))
    await store_on(client).transact(OPS)
    assert len(client.tokens) == 2
    assert client.tokens[0] != client.tokens[1]


async def test_persistent_conflict_is_unavailable() -> None:
    """A conflict that never clears ends in StoreUnavailable after a bounded number of tries."""
    client = FakeClient(*[cancelled("TransactionConflict", "None")] * 10)
    with pytest.raises(StoreUnavailable, match="TransactionCanceledException"):
        await store_on(client).transact(OPS)
    assert len(client.tokens) == 5


async def test_condition_failure_wins_over_conflict() -> None:
    """A failed condition is final: ConditionFailed with the caller's index, no retry."""
    client = FakeClient(cancelled("TransactionConflict", "ConditionalCheckFailed"))
    with pytest.raises(ConditionFailed) as failed:
        await store_on(client).transact(OPS)
    assert failed.value.index == 1
    assert len(client.tokens) == 1


@given(st.text(max_size=4), st.text(max_size=6))
def test_successor_bounds_exactly_the_prefixed_strings(prefix: str, s: str) -> None:
    """[prefix, successor(prefix)) holds exactly the strings starting with prefix."""
    upper = _successor(prefix)
    inside = prefix <= s and (upper is None or s < upper)
    assert inside == s.startswith(prefix)


def test_successor_edges() -> None:
    """The last code point carries over; the surrogate gap is skipped."""
    assert _successor("A#") == "A$"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\U0010ffff") is None
    assert _successor("a\ud7ff") == "a\ue000"
