"""The SQLite adapter's own guarantees: every statement reaches items by key (SQLite's query
plans say SEARCH using the primary key or the index, never SCAN), WAL mode, and a file locked
by another process is waited for and retried instead of failing the call."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from engine.store import (
    Check,
    ConditionFailed,
    Delete,
    Item,
    Op,
    Put,
    SQLiteStore,
    StoreUnavailable,
)
from tests.support import timeout


def _plans(path: Path, statements: list[str]) -> list[tuple[str, list[str]]]:
    """``EXPLAIN QUERY PLAN`` of each captured statement that reads or writes rows."""
    db = sqlite3.connect(path)
    try:
        return [
            (sql, [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)])
            for sql in statements
            if sql.lstrip().upper().startswith(("SELECT", "WITH", "DELETE", "UPDATE", "INSERT"))
        ]
    finally:
        db.close()


async def _filled(tmp_path: Path) -> SQLiteStore:
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    await store.put_many(
        [
            Item(pk=f"P#{p}", sk=f"S#{s:04d}", data={"n": s}, gsi1pk="IDX", gsi1sk=f"{p}-{s}")
            for p in range(20)
            for s in range(100)
        ]
    )
    return store


async def test_every_statement_is_a_key_lookup_never_a_scan(tmp_path: Path) -> None:
    """Writes (with every kind of condition), reads and queries are planned as SEARCHes of
    the primary key or the index; no plan scans the items table."""
    store = await _filled(tmp_path)
    statements: list[str] = []
    await store._run(lambda: store._conn.set_trace_callback(statements.append))
    try:
        await store.transact(
            [
                Put(item=Item(pk="P#1", sk="S#0001", data={"n": 2}), expect=1),
                Put(item=Item(pk="P#new", sk="S#0001"), expect="absent"),
                Delete(pk="P#2", sk="S#0002", expect="present"),
                Check(pk="P#3", sk="S#0003"),
            ]
        )
        await store.put(Item(pk="P#4", sk="S#0004"), expect="present")
        await store.delete("P#5", "S#0005")
        await store.put_many([Item(pk=f"P#{i}", sk="S#0006") for i in range(450)])
        assert await store.get("P#6", "S#0006") is not None
        assert len(await store.query("P#7", prefix="S#00")) == 100
        assert len(await store.query("P#7", start="S#0010", end="S#0020", limit=5)) == 5
        assert len(await store.query_index("IDX", start="1-", end="2", limit=10)) == 10
    finally:
        await store._run(lambda: store._conn.set_trace_callback(None))
        await store.close()
    plans = _plans(tmp_path / "store.sqlite3", statements)
    assert any(sql.startswith("WITH keys") for sql, _ in plans)  # the version check ran
    for sql, details in plans:
        on_items = [d for d in details if " items" in f" {d}"]
        assert not [d for d in on_items if d.startswith("SCAN")], (sql, details)
        if sql.upper().startswith(("SELECT", "WITH", "DELETE")):
            assert on_items, (sql, details)
            assert all(
                d.startswith("SEARCH items USING") and ("PRIMARY KEY" in d or "INDEX" in d)
                for d in on_items
            ), (sql, details)


async def test_prefix_query_keeps_exactly_the_prefix(tmp_path: Path) -> None:
    """A prefix read through a key range returns the keys that start with it, and no others."""
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    sks = ["A", "AB", "AB\U0010ffff", "AB\U0010ffffz", "ABC", "AC", "B", "\U0010ffff"]
    await store.put_many([Item(pk="P", sk=sk) for sk in sks])
    try:
        for prefix in ["A", "AB", "AB\U0010ffff", "\U0010ffff", "Z"]:
            found = [item.sk for item in await store.query("P", prefix=prefix)]
            assert found == sorted(sk for sk in sks if sk.startswith(prefix)), prefix
    finally:
        await store.close()


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    """The embedded store runs in WAL mode, so readers never wait for the writer."""
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    await store.close()
    db = sqlite3.connect(tmp_path / "store.sqlite3")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer: take the write lock, keep it ``seconds``, then commit."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO items VALUES ('OTHER', 'X', NULL, NULL, 1, '{}')")
        held.set()
        threading.Event().wait(seconds)
        db.execute("COMMIT")
    finally:
        db.close()


async def _other_writer(path: Path, seconds: float) -> threading.Thread:
    """Start ``_hold_write_lock`` in a thread; return once it holds the lock."""
    held = threading.Event()
    thread = threading.Thread(target=_hold_write_lock, args=(path, seconds, held))
    thread.start()
    assert await asyncio.to_thread(held.wait, 10)
    return thread


async def test_a_locked_file_is_waited_for_and_the_write_retried(tmp_path: Path) -> None:
    """A write that outlasts SQLite's busy timeout behind another writer is retried, lands
    once the lock is released, and raises nothing."""
    path = tmp_path / "store.sqlite3"
    store = await SQLiteStore.open(path, busy_ms=20, retry_seconds=30)
    other = await _other_writer(path, timeout(0.5))
    try:
        await store.put(Item(pk="MINE", sk="X", data={"v": 1}), expect="absent")
        got = await store.get("MINE", "X")
        assert got is not None
        assert got.version == 1
        assert await store.get("OTHER", "X") is not None
    finally:
        other.join()
        await store.close()


async def test_a_lock_held_past_the_retry_budget_is_unavailable(tmp_path: Path) -> None:
    """Past the retry budget the caller gets StoreUnavailable, and the write did not land."""
    path = tmp_path / "store.sqlite3"
    store = await SQLiteStore.open(path, busy_ms=10, retry_seconds=0.2)
    other = await _other_writer(path, timeout(1.5))
    try:
        with pytest.raises(StoreUnavailable):
            await store.put(Item(pk="MINE", sk="X"))
        other.join()
        assert await store.get("MINE", "X") is None
    finally:
        other.join()
        await store.close()


# --- group commit -------------------------------------------------------------------------------
async def test_concurrent_transactions_commit_in_groups_each_with_its_own_outcome(
    tmp_path: Path,
) -> None:
    """Sixty transactions at once: forty on keys of their own all land, of twenty claiming one
    key exactly one does (the others ``ConditionFailed`` at their op, writing nothing), and it
    takes fewer commits than transactions."""
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    try:
        before = store.groups

        def claim(i: int) -> list[Op]:
            return [
                Put(item=Item(pk="CLAIM", sk="X", data={"by": i}), expect="absent"),
                Put(item=Item(pk=f"BY#{i}", sk="X")),
            ]

        calls = [store.transact([Put(item=Item(pk=f"OWN#{i}", sk="X"))]) for i in range(40)]
        calls += [store.transact(claim(i)) for i in range(20)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes[:40] == [None] * 40
        failed = [o for o in outcomes[40:] if isinstance(o, ConditionFailed)]
        assert len(failed) == 19
        assert {f.index for f in failed} == {0}
        winner = await store.get("CLAIM", "X")
        assert winner is not None
        assert winner.version == 1
        claimed = [i for i in range(20) if await store.get(f"BY#{i}", "X") is not None]
        assert claimed == [winner.data["by"]]
        assert all([await store.get(f"OWN#{i}", "X") for i in range(40)])
        assert store.groups - before < 60
    finally:
        await store.close()


async def test_a_transaction_sees_the_writes_of_those_before_it_in_its_group(
    tmp_path: Path,
) -> None:
    """In one group, in arrival order: a put, a put expecting the version the first left, a
    delete of that item, a put expecting it absent, and a put expecting the now stale
    version 2 (refused). The table ends as the sequence says."""
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    try:
        item = Item(pk="K", sk="X", data={"step": 1})
        outcomes = await asyncio.gather(
            store.put(item),
            store.put(Item(pk="K", sk="X", data={"step": 2}), expect=1),
            store.delete("K", "X", expect=2),
            store.put(Item(pk="K", sk="X", data={"step": 4}), expect="absent"),
            store.put(Item(pk="K", sk="X", data={"step": 5}), expect=2),
            return_exceptions=True,
        )
        assert outcomes[:4] == [None] * 4
        assert isinstance(outcomes[4], ConditionFailed)
        got = await store.get("K", "X")
        assert got is not None
        assert (got.data, got.version) == ({"step": 4}, 1)
    finally:
        await store.close()


async def test_a_group_that_cannot_commit_fails_every_transaction_and_writes_none(
    tmp_path: Path,
) -> None:
    """Behind another process's lock held past the retry budget, each transaction of the
    group gets its own StoreUnavailable and none of them landed."""
    path = tmp_path / "store.sqlite3"
    store = await SQLiteStore.open(path, busy_ms=10, retry_seconds=0.2)
    other = await _other_writer(path, timeout(1.5))
    try:
        outcomes = await asyncio.gather(
            *(store.put(Item(pk=f"MINE#{i}", sk="X")) for i in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(o, StoreUnavailable) for o in outcomes)
        assert len({id(o) for o in outcomes}) == 10
        other.join()
        assert [await store.get(f"MINE#{i}", "X") for i in range(10)] == [None] * 10
        await store.put(Item(pk="AFTER", sk="X"))  # the store works again once the lock is gone
    finally:
        other.join()
        await store.close()
