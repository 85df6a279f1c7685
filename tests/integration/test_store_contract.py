"""The store port's contract, run against both adapters: SQLite and DynamoDB.

DynamoDB is moto's server over real HTTP, driven by the real aioboto3 client; every test gets
a fresh table. Races are only asserted on SQLite: moto serialises requests loosely and does
not make concurrent conditional writes atomic the way DynamoDB does, so a race "won" twice on
moto would say nothing about DynamoDB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig

from engine.store import (
    MAX_TRANSACT,
    Check,
    ConditionFailed,
    Delete,
    Item,
    Put,
    SQLiteStore,
    Store,
    StoreUnavailable,
    open_store,
)
from engine.store._dynamodb import DynamoDBStore
from tests.support import free_port, timeout

FAST_FAIL = AioConfig(
    connect_timeout=timeout(0.5),
    read_timeout=timeout(2),
    retries={"mode": "standard", "max_attempts": 1},
)


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("dynamodb", id="dynamodb")]
)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = await SQLiteStore.open(tmp_path / "store.sqlite3")
        yield opened
        await opened.close()
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    dynamo = await DynamoDBStore.open(
        f"contract-{uuid.uuid4().hex}", endpoint_url=endpoint, create=True
    )
    yield dynamo
    if dynamo._client is not None:  # keep moto's memory small
        await dynamo._client.delete_table(TableName=dynamo._table)
    await dynamo.close()


def item(pk: str, sk: str, **fields: Any) -> Item:
    gsi1pk = fields.pop("gsi1pk", None)
    gsi1sk = fields.pop("gsi1sk", None)
    return Item(pk=pk, sk=sk, data=fields, gsi1pk=gsi1pk, gsi1sk=gsi1sk)


def sks(items: list[Item]) -> list[str]:
    return [i.sk for i in items]


# --- items, versions, conditions -------------------------------------------------------------


async def test_round_trip_keeps_nested_data_exactly(store: Store) -> None:
    """Nested data, floats, ints beyond 64 bits and unicode read back equal and typed alike."""
    data = {
        "name": "João da Silva 🩺 — ção",
        "float": 0.1,
        "whole_float": 1.0,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "int": 2**63 - 1,
        "bigger_int": 2**100,
        "negative": -(2**70),
        "flags": [True, False, None],
        "nested": {"a": [1, 2.5, {"b": "c"}], "empty": {}, "none": [], "blank": ""},
    }
    await store.put(Item(pk="USER#1", sk="PROFILE", data=data, gsi1pk="DOCTORS", gsi1sk="x"))
    got = await store.get("USER#1", "PROFILE")
    assert got is not None
    assert got.data == data
    assert type(got.data["whole_float"]) is float
    assert type(got.data["int"]) is int
    assert (got.pk, got.sk, got.gsi1pk, got.gsi1sk, got.version) == (
        "USER#1",
        "PROFILE",
        "DOCTORS",
        "x",
        1,
    )


async def test_get_of_a_missing_item_is_none(store: Store) -> None:
    """Reading an item never written returns None."""
    assert await store.get("USER#nobody", "PROFILE") is None


async def test_every_write_increments_the_version(store: Store) -> None:
    """Versions are 1, 2, 3 across put, transact and put_many; they ignore the caller's value."""
    await store.put(Item(pk="P", sk="S", data={"n": 1}, version=42))
    assert (await store.get("P", "S")).version == 1  # type: ignore[union-attr]
    await store.transact([Put(item=item("P", "S", n=2))])
    assert (await store.get("P", "S")).version == 2  # type: ignore[union-attr]
    await store.put_many([item("P", "S", n=3)])
    got = await store.get("P", "S")
    assert got is not None
    assert (got.version, got.data) == (3, {"n": 3})


async def test_expect_absent_writes_once(store: Store) -> None:
    """An absent-conditioned put succeeds once; the second fails and changes nothing."""
    await store.put(item("P", "S", owner="first"), expect="absent")
    with pytest.raises(ConditionFailed) as failed:
        await store.put(item("P", "S", owner="second"), expect="absent")
    assert failed.value.index == 0
    got = await store.get("P", "S")
    assert got is not None
    assert (got.data, got.version) == ({"owner": "first"}, 1)


async def test_expect_present_needs_the_item(store: Store) -> None:
    """A present-conditioned put fails on a missing item and succeeds on an existing one."""
    with pytest.raises(ConditionFailed):
        await store.put(item("P", "S", n=1), expect="present")
    assert await store.get("P", "S") is None
    await store.put(item("P", "S", n=1))
    await store.put(item("P", "S", n=2), expect="present")
    assert (await store.get("P", "S")).data == {"n": 2}  # type: ignore[union-attr]


async def test_expect_version_is_optimistic_locking(store: Store) -> None:
    """A write at the read version wins; a second writer holding the same version fails."""
    with pytest.raises(ConditionFailed):
        await store.put(item("P", "S", n=0), expect=1)
    await store.put(item("P", "S", n=1))
    await store.put(item("P", "S", n=2), expect=1)
    with pytest.raises(ConditionFailed):
        await store.put(item("P", "S", n=3), expect=1)
    got = await store.get("P", "S")
    assert got is not None
    assert (got.data, got.version) == ({"n": 2}, 2)


async def test_delete_honours_its_condition(store: Store) -> None:
    """A conditioned delete removes only when the condition holds; unconditioned is idempotent."""
    await store.put(item("P", "S", n=1))
    await store.put(item("P", "S", n=2))
    with pytest.raises(ConditionFailed) as failed:
        await store.delete("P", "S", expect=1)
    assert failed.value.index == 0
    with pytest.raises(ConditionFailed):
        await store.delete("P", "S", expect="absent")
    assert await store.get("P", "S") is not None
    await store.delete("P", "S", expect=2)
    assert await store.get("P", "S") is None
    with pytest.raises(ConditionFailed):
        await store.delete("P", "S", expect="present")
    await store.delete("P", "S")
    await store.put(item("P", "S", n=3))
    assert (await store.get("P", "S")).version == 1  # type: ignore[union-attr]


# --- transactions ----------------------------------------------------------------------------


async def test_transaction_is_all_or_nothing(store: Store) -> None:
    """A failing third operation leaves the first two unwritten and names index 2."""
    await store.put(item("KEEP", "S", n=1))
    with pytest.raises(ConditionFailed) as failed:
        await store.transact(
            [
                Put(item=item("A", "S"), expect="absent"),
                Delete(pk="KEEP", sk="S"),
                Put(item=item("C", "S"), expect="present"),
            ]
        )
    assert failed.value.index == 2
    assert await store.get("A", "S") is None
    assert await store.get("C", "S") is None
    assert (await store.get("KEEP", "S")).version == 1  # type: ignore[union-attr]


async def test_transaction_reports_the_first_failing_operation(store: Store) -> None:
    """With several failing conditions, ConditionFailed.index is the first of them."""
    await store.put(item("X", "S"))
    await store.put(item("Y", "S"))
    with pytest.raises(ConditionFailed) as failed:
        await store.transact(
            [
                Put(item=item("A", "S")),
                Check(pk="X", sk="S", expect="absent"),
                Put(item=item("B", "S")),
                Put(item=item("Y", "S"), expect=7),
            ]
        )
    assert failed.value.index == 1
    assert await store.get("A", "S") is None


async def test_transaction_applies_every_kind_of_operation(store: Store) -> None:
    """Put, Delete and Check succeed together; versions and deletions land at once."""
    await store.put(item("GONE", "S"))
    await store.put(item("CHECKED", "S"))
    await store.put(item("BUMP", "S", n=1))
    await store.transact(
        [
            Check(pk="CHECKED", sk="S"),
            Check(pk="NOWHERE", sk="S", expect="absent"),
            Check(pk="ANYTHING", sk="S", expect="any"),
            Delete(pk="GONE", sk="S", expect="present"),
            Put(item=item("BUMP", "S", n=2), expect=1),
            Put(item=item("NEW", "S"), expect="absent"),
        ]
    )
    assert await store.get("GONE", "S") is None
    assert (await store.get("CHECKED", "S")).version == 1  # type: ignore[union-attr]
    assert (await store.get("BUMP", "S")).version == 2  # type: ignore[union-attr]
    assert (await store.get("NEW", "S")).version == 1  # type: ignore[union-attr]
    assert await store.get("NOWHERE", "S") is None
    assert await store.get("ANYTHING", "S") is None


async def test_check_at_a_version_guards_other_writes(store: Store) -> None:
    """A Check on a stale version blocks the transaction's writes."""
    await store.put(item("GUARD", "S"))
    await store.put(item("GUARD", "S"))
    with pytest.raises(ConditionFailed) as failed:
        await store.transact([Put(item=item("W", "S")), Check(pk="GUARD", sk="S", expect=1)])
    assert failed.value.index == 1
    assert await store.get("W", "S") is None
    await store.transact([Put(item=item("W", "S")), Check(pk="GUARD", sk="S", expect=2)])
    assert await store.get("W", "S") is not None


async def test_uniqueness_guard_admits_one_owner(store: Store) -> None:
    """Two accounts claiming one e-mail guard: the second transaction fails and writes nothing."""

    def register(user: str) -> list[Put]:
        return [
            Put(item=item(f"USER#{user}", "PROFILE", email="a@b.c"), expect="absent"),
            Put(item=item("UNIQUE#email#a@b.c", "UNIQUE", user=user), expect="absent"),
        ]

    await store.transact(register("u1"))
    with pytest.raises(ConditionFailed) as failed:
        await store.transact(register("u2"))
    assert failed.value.index == 1
    assert await store.get("USER#u2", "PROFILE") is None
    guard = await store.get("UNIQUE#email#a@b.c", "UNIQUE")
    assert guard is not None
    assert (guard.data, guard.version) == ({"user": "u1"}, 1)


async def test_transaction_of_max_size_succeeds_and_more_is_rejected(store: Store) -> None:
    """100 operations commit together; 101 are refused with ValueError before any write."""
    await store.transact([Put(item=item("T", f"{i:03}")) for i in range(MAX_TRANSACT)])
    assert len(await store.query("T")) == MAX_TRANSACT
    with pytest.raises(ValueError, match="at most"):
        await store.transact([Put(item=item("U", f"{i:03}")) for i in range(MAX_TRANSACT + 1)])
    assert await store.query("U") == []


async def test_transaction_rejects_an_item_twice(store: Store) -> None:
    """The same key twice in one transaction is a ValueError, whatever the operations."""
    with pytest.raises(ValueError, match="twice"):
        await store.transact([Put(item=item("D", "S")), Check(pk="D", sk="S")])
    assert await store.get("D", "S") is None


async def test_empty_transaction_is_a_no_op(store: Store) -> None:
    """No operations: nothing to do, no error."""
    await store.transact([])


# --- queries ---------------------------------------------------------------------------------


@pytest.fixture
async def partition(store: Store) -> Store:
    keys = ["A#1", "A#2", "A#3", "A#4", "A#5", "AB", "B#1", "B#2", "B#3", "C"]
    await store.put_many([item("DOC#1", sk, key=sk) for sk in keys])
    await store.put(item("DOC#2", "A#1"))  # another partition, never returned
    return store


async def test_query_reads_a_partition_in_order(partition: Store) -> None:
    """Without bounds a query returns the whole partition in sort-key order, or reversed."""
    everything = ["A#1", "A#2", "A#3", "A#4", "A#5", "AB", "B#1", "B#2", "B#3", "C"]
    assert sks(await partition.query("DOC#1")) == everything
    assert sks(await partition.query("DOC#1", descending=True)) == everything[::-1]
    assert await partition.query("DOC#none") == []
    got = (await partition.query("DOC#1", prefix="C"))[0]
    assert (got.pk, got.data, got.version) == ("DOC#1", {"key": "C"}, 1)


async def test_query_by_prefix(partition: Store) -> None:
    """A prefix selects exactly the keys that start with it."""
    assert sks(await partition.query("DOC#1", prefix="A#")) == ["A#1", "A#2", "A#3", "A#4", "A#5"]
    assert sks(await partition.query("DOC#1", prefix="A")) == [
        "A#1",
        "A#2",
        "A#3",
        "A#4",
        "A#5",
        "AB",
    ]
    assert sks(await partition.query("DOC#1", prefix="B#", descending=True)) == [
        "B#3",
        "B#2",
        "B#1",
    ]
    assert await partition.query("DOC#1", prefix="Z") == []


async def test_query_range_is_half_open(partition: Store) -> None:
    """start is included, end is excluded, each alone or together, with or without prefix."""
    assert sks(await partition.query("DOC#1", start="A#4", end="B#2")) == [
        "A#4",
        "A#5",
        "AB",
        "B#1",
    ]
    assert sks(await partition.query("DOC#1", start="B#3")) == ["B#3", "C"]
    assert sks(await partition.query("DOC#1", end="A#3")) == ["A#1", "A#2"]
    assert sks(await partition.query("DOC#1", prefix="A#", start="A#2", end="A#4")) == [
        "A#2",
        "A#3",
    ]
    assert sks(await partition.query("DOC#1", prefix="A#", start="A#0", end="Z")) == [
        "A#1",
        "A#2",
        "A#3",
        "A#4",
        "A#5",
    ]
    assert sks(await partition.query("DOC#1", start="A#4", end="B#2", descending=True)) == [
        "B#1",
        "AB",
        "A#5",
        "A#4",
    ]
    assert await partition.query("DOC#1", start="B", end="B") == []
    assert len(await partition.query("DOC#1", start="")) == 10
    assert len(await partition.query("DOC#1", after="")) == 10
    assert await partition.query("DOC#1", after="", descending=True) == []
    assert await partition.query("DOC#1", end="") == []
    assert await partition.query("DOC#1", start="C", end="A") == []


async def test_query_after_continues_past_a_key(partition: Store) -> None:
    """after is exclusive in the reading order: pages chain without repeats or gaps."""
    assert sks(await partition.query("DOC#1", prefix="A#", after="A#3")) == ["A#4", "A#5"]
    assert sks(await partition.query("DOC#1", prefix="A#", after="A#3", descending=True)) == [
        "A#2",
        "A#1",
    ]
    assert sks(await partition.query("DOC#1", start="A#2", end="B#1", after="A#5")) == ["AB"]
    pages: list[str] = []
    after: str | None = None
    while page := await partition.query("DOC#1", limit=3, after=after, descending=True):
        pages += sks(page)
        after = page[-1].sk
    assert pages == ["C", "B#3", "B#2", "B#1", "AB", "A#5", "A#4", "A#3", "A#2", "A#1"]


async def test_query_limit(partition: Store) -> None:
    """limit caps the count after every other restriction; zero returns nothing."""
    assert sks(await partition.query("DOC#1", limit=2)) == ["A#1", "A#2"]
    assert sks(await partition.query("DOC#1", prefix="B#", limit=2, descending=True)) == [
        "B#3",
        "B#2",
    ]
    assert sks(await partition.query("DOC#1", start="A#2", end="B", after="A#2", limit=2)) == [
        "A#3",
        "A#4",
    ]
    assert await partition.query("DOC#1", limit=0) == []
    assert len(await partition.query("DOC#1", limit=100)) == 10


async def test_query_reads_past_dynamodb_page_size(store: Store) -> None:
    """A partition over DynamoDB's 1 MB page is read whole, in order, in both directions."""
    count = 130
    blob = "x" * 10_000  # 130 items x 10 KB: 1.3 MB
    keys = [f"SLOT#{i:04}" for i in range(count)]
    await store.put_many([item("BIG", sk, blob=blob, i=i) for i, sk in enumerate(keys)])
    if isinstance(store, DynamoDBStore):  # the premise: one Query page cannot hold it all
        page = await store._conn.query(
            TableName=store._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "BIG"}},
        )
        assert "LastEvaluatedKey" in page
        assert page["Count"] < count
    assert sks(await store.query("BIG")) == keys
    assert sks(await store.query("BIG", descending=True)) == keys[::-1]
    assert sks(await store.query("BIG", limit=120)) == keys[:120]
    assert sks(await store.query("BIG", prefix="SLOT#01", descending=True, limit=25)) == [
        f"SLOT#{i:04}" for i in range(129, 104, -1)
    ]
    assert sks(await store.query("BIG", after="SLOT#0005", limit=110)) == keys[6:116]


# --- the secondary index ---------------------------------------------------------------------


@pytest.fixture
async def indexed(store: Store) -> Store:
    await store.put_many(
        [
            item("APPT#3", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-03"),
            item("APPT#1", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-01"),
            item("APPT#2b", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-02"),
            item("APPT#2a", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-02"),
            item("APPT#2a", "ZZZ", gsi1pk="PENDING", gsi1sk="2026-01-02"),
            item("APPT#4", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-04"),
            item("USER#9", "PROFILE", gsi1pk="DOCTORS", gsi1sk="9"),
            item("APPT#5", "APPT"),
        ]
    )
    return store


def keys_of(items: list[Item]) -> list[tuple[str, str]]:
    return [(i.pk, i.sk) for i in items]


async def test_query_index_orders_by_index_key_then_item_key(indexed: Store) -> None:
    """Index reads return one index partition by gsi1sk; ties come in (pk, sk) order."""
    assert keys_of(await indexed.query_index("PENDING")) == [
        ("APPT#1", "APPT"),
        ("APPT#2a", "APPT"),
        ("APPT#2a", "ZZZ"),
        ("APPT#2b", "APPT"),
        ("APPT#3", "APPT"),
        ("APPT#4", "APPT"),
    ]
    doctors = await indexed.query_index("DOCTORS")
    assert [(d.pk, d.gsi1sk, d.version) for d in doctors] == [("USER#9", "9", 1)]
    assert await indexed.query_index("NOBODY") == []


async def test_query_index_range_and_limit(indexed: Store) -> None:
    """Index ranges are [start, end); a limit cutting a tie keeps the (pk, sk) order."""
    got = await indexed.query_index("PENDING", start="2026-01-02", end="2026-01-04")
    assert keys_of(got) == [
        ("APPT#2a", "APPT"),
        ("APPT#2a", "ZZZ"),
        ("APPT#2b", "APPT"),
        ("APPT#3", "APPT"),
    ]
    assert keys_of(await indexed.query_index("PENDING", end="2026-01-02")) == [("APPT#1", "APPT")]
    assert keys_of(await indexed.query_index("PENDING", start="2026-01-04")) == [("APPT#4", "APPT")]
    assert keys_of(await indexed.query_index("PENDING", limit=2)) == [
        ("APPT#1", "APPT"),
        ("APPT#2a", "APPT"),
    ]
    assert keys_of(await indexed.query_index("PENDING", start="2026-01-02", limit=3)) == [
        ("APPT#2a", "APPT"),
        ("APPT#2a", "ZZZ"),
        ("APPT#2b", "APPT"),
    ]
    assert await indexed.query_index("PENDING", start="2026-01-05") == []
    assert await indexed.query_index("PENDING", start="2026-01-03", end="2026-01-03") == []
    assert await indexed.query_index("PENDING", limit=0) == []


async def test_re_put_without_index_keys_leaves_the_index(indexed: Store) -> None:
    """Writing an item again without gsi keys removes it from the index; with them, moves it."""
    await indexed.put(item("APPT#1", "APPT", decided=True))
    got = await indexed.get("APPT#1", "APPT")
    assert got is not None
    assert (got.gsi1pk, got.gsi1sk, got.version) == (None, None, 2)
    pending = keys_of(await indexed.query_index("PENDING"))
    assert ("APPT#1", "APPT") not in pending
    assert len(pending) == 5
    await indexed.transact(
        [Put(item=item("APPT#3", "APPT", gsi1pk="PENDING", gsi1sk="2026-01-00"))]
    )
    assert keys_of(await indexed.query_index("PENDING", limit=1)) == [("APPT#3", "APPT")]
    await indexed.transact([Put(item=item("APPT#3", "APPT"))])
    assert ("APPT#3", "APPT") not in keys_of(await indexed.query_index("PENDING"))


# --- bulk, health ----------------------------------------------------------------------------


async def test_put_many_writes_hundreds_of_items(store: Store) -> None:
    """600 items land (beyond any batch size); writing them again bumps each version."""
    items = [item("MANY", f"{i:04}", i=i, gsi1pk="MANY", gsi1sk=f"{i:04}") for i in range(600)]
    await store.put_many(items)
    got = await store.query("MANY")
    assert [i.data["i"] for i in got] == list(range(600))
    assert {i.version for i in got} == {1}
    assert len(await store.query_index("MANY")) == 600
    await store.put_many(items[:50])
    assert {i.version for i in await store.query("MANY", limit=50)} == {2}
    assert (await store.get("MANY", "0050")).version == 1  # type: ignore[union-attr]
    await store.put_many([])


async def test_ping_answers(store: Store) -> None:
    """ping succeeds on a working store."""
    await store.ping()


# --- adapter specifics -----------------------------------------------------------------------


async def test_sqlite_concurrent_claims_of_one_guard_have_one_winner(tmp_path: Any) -> None:
    """50 transactions race for one guard item: exactly one commits, 49 fail and write nothing.

    SQLite only: moto does not make concurrent conditional writes atomic (see module docstring).
    """
    store = await SQLiteStore.open(tmp_path / "race.sqlite3")
    try:

        async def claim(n: int) -> bool:
            try:
                await store.transact(
                    [
                        Put(item=item(f"USER#{n}", "PROFILE"), expect="absent"),
                        Put(item=item("UNIQUE#cpf#1", "UNIQUE", user=n), expect="absent"),
                    ]
                )
            except ConditionFailed:
                return False
            return True

        won = await asyncio.gather(*(claim(n) for n in range(50)))
        assert sum(won) == 1
        winner = won.index(True)
        guard = await store.get("UNIQUE#cpf#1", "UNIQUE")
        assert guard is not None
        assert (guard.data, guard.version) == ({"user": winner}, 1)
        for n in range(50):
            assert (await store.get(f"USER#{n}", "PROFILE") is None) == (n != winner)
    finally:
        await store.close()


async def test_dynamodb_unreachable_endpoint_is_unavailable(moto_endpoint: str) -> None:
    """Opening DynamoDB on a closed port fails fast with StoreUnavailable."""
    del moto_endpoint  # only for its AWS_* test credentials
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable, match="describe_table"):
        await asyncio.wait_for(
            DynamoDBStore.open("nowhere", endpoint_url=endpoint, create=True, config=FAST_FAIL),
            timeout(10),
        )


async def test_dynamodb_failing_endpoint_makes_every_call_unavailable(
    moto_endpoint: str,
) -> None:
    """When DynamoDB stops answering, reads and writes raise StoreUnavailable without data."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = await DynamoDBStore.open(
        "doomed", endpoint_url=f"http://127.0.0.1:{port}", create=True, config=FAST_FAIL
    )
    try:
        await store.put(item("P", "S", secret="4111-1111"))
        server.stop()
        calls = [
            store.get("P", "S"),
            store.put(item("P", "S", secret="4111-1111")),
            store.delete("P", "S"),
            store.transact([Put(item=item("Q", "S", secret="4111-1111"))]),
            store.put_many([item("R", "S", secret="4111-1111")]),
            store.query("P"),
            store.query_index("X"),
            store.ping(),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as failed:
                await asyncio.wait_for(call, timeout(10))
            assert "4111" not in str(failed.value)
            assert failed.value.__cause__ is None
    finally:
        await store.close()


async def test_dynamodb_closed_store_is_unavailable(moto_endpoint: str) -> None:
    """After close every call fails with StoreUnavailable."""
    store = await DynamoDBStore.open(
        f"closed-{uuid.uuid4().hex}", endpoint_url=moto_endpoint, create=True
    )
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("P", "S")
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_dynamodb_missing_table_needs_create(moto_endpoint: str) -> None:
    """Without create, a missing table is StoreUnavailable (production expects it provisioned)."""
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await DynamoDBStore.open(f"absent-{uuid.uuid4().hex}", endpoint_url=moto_endpoint)


async def test_dynamodb_open_twice_reuses_the_table(moto_endpoint: str) -> None:
    """create=True on an existing table keeps its items (a restarted server loses nothing)."""
    name = f"reused-{uuid.uuid4().hex}"
    first = await DynamoDBStore.open(name, endpoint_url=moto_endpoint, create=True)
    await first.put(item("P", "S", n=1))
    await first.close()
    second = await DynamoDBStore.open(name, endpoint_url=moto_endpoint, create=True)
    try:
        assert (await second.get("P", "S")).data == {"n": 1}  # type: ignore[union-attr]
    finally:
        await second.close()


async def test_dynamodb_rejects_an_index_key_without_its_sort_key(moto_endpoint: str) -> None:
    """gsi1pk without gsi1sk cannot be indexed by DynamoDB, so the adapter refuses it."""
    store = await DynamoDBStore.open(
        f"half-{uuid.uuid4().hex}", endpoint_url=moto_endpoint, create=True
    )
    try:
        with pytest.raises(ValueError, match="gsi1sk"):
            await store.put(Item(pk="P", sk="S", gsi1pk="DOCTORS"))
        with pytest.raises(ValueError, match="gsi1sk"):
            await store.transact([Put(item=Item(pk="P", sk="S", gsi1pk="DOCTORS"))])
        assert await store.get("P", "S") is None
    finally:
        await store.close()


async def test_open_store_reads_the_dynamodb_url(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dynamodb://<table>?create=true creates the table; AWS_ENDPOINT_URL names the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    name = f"url-{uuid.uuid4().hex}"
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await open_store(f"dynamodb://{name}")
    store = await open_store(f"dynamodb://{name}?create=true")
    try:
        assert isinstance(store, DynamoDBStore)
        await store.put(item("P", "S"))
        assert await store.get("P", "S") is not None
    finally:
        await store.close()
    with pytest.raises(ValueError, match="create"):
        await open_store(f"dynamodb://{name}?create=maybe")
    with pytest.raises(ValueError, match="option"):
        await open_store(f"dynamodb://{name}?region=us-east-1")
