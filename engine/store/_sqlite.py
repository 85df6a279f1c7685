"""SQLite adapter of the store port: the embedded default, one file in the data directory.

One connection, driven by one dedicated thread, so statements never interleave and a
transaction is a real ``BEGIN IMMEDIATE ... COMMIT``: all-or-nothing, and serialised against
every other write of this process. WAL mode keeps reads cheap.

Group commit: the transactions that arrive while the thread is busy wait in a queue and then
go in one ``BEGIN IMMEDIATE ... COMMIT`` together, in arrival order. Each keeps its own
outcome: its conditions are checked against the versions as the transactions before it in
the group left them, and one whose condition fails (``ConditionFailed``) writes nothing while
the others commit. The group costs the statements of one transaction (one version lookup
for all its keys, one ``executemany`` per kind of write, one commit), so under a burst of
bookings the writes no longer queue one commit and a few GIL hand-offs each: every
statement gives the GIL away, and getting it back from a busy event loop can take the
interpreter's switch interval (5 ms). If the group itself fails (the file stays locked past
the retry budget, an I/O error), every transaction in it fails with ``StoreUnavailable`` and
none was written.

Every statement reaches items by key: a write's version check is one primary-key lookup per
key (a constant list joined to the table, so SQLite plans ``SEARCH ... USING PRIMARY KEY``),
never a scan, so a write costs the same at ten thousand and at ten million rows
(``tests/integration/test_sqlite_store.py`` reads the plans; ``loadtest/bench_store.py``
times it).

Several processes (``serve --workers``) share the file. A writer that finds it locked waits
``busy_ms`` inside SQLite; if that runs out, the whole call is retried with a short backoff
for up to ``retry_seconds``. That is safe: a failed transaction is rolled back before the
retry, so nothing of it was written. Only past that budget does the caller get
``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec

from engine.store._port import (
    ConditionFailed,
    Delete,
    Expect,
    Item,
    Op,
    Put,
    StoreUnavailable,
    check_items,
    check_ops,
    prefix_end,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    gsi1pk TEXT,
    gsi1sk TEXT,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk) WHERE gsi1pk IS NOT NULL;
"""

_VERSIONS = (
    "WITH keys(pk, sk) AS (VALUES {}) "
    "SELECT items.pk, items.sk, items.version FROM keys CROSS JOIN items "
    "ON items.pk = keys.pk AND items.sk = keys.sk"
)
"""Versions of a list of keys. ``CROSS JOIN`` fixes the join order (the constant list
outside), so each key is one primary-key lookup; ``(pk, sk) IN (VALUES ...)`` is planned as a
full scan of ``items`` by SQLite 3.40."""
_SELECT_CHUNK = 400
"""Keys per version lookup: two parameters each, well under SQLite's parameter limit."""
_SELECT_ITEMS = "SELECT pk, sk, gsi1pk, gsi1sk, version, data FROM items WHERE "
"""The columns :meth:`SQLiteStore._row` reads, in its order; the condition follows."""
_SELECT_ONE = _SELECT_ITEMS + "pk=? AND sk=?"
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
CACHE_KIB = 64 * 1024
"""Page cache per connection (SQLite's default is 2 MiB): the upper levels of the key B-tree
of a table of millions of rows stay in memory, so a key lookup's cost barely grows."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def _holds(current: int | None, expect: Expect) -> bool:
    if expect == "any":
        return True
    if expect == "absent":
        return current is None
    if expect == "present":
        return current is not None
    return current == expect


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in _BUSY


def _private_files(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(each, 0o600)


def _in_range(where: str, args: list[Any], column: str, start: str | None, end: str | None) -> str:
    """``where`` with ``column`` kept within ``[start, end)`` where given (their values
    appended to ``args``)."""
    if start is not None:
        where += f" AND {column} >= ?"
        args.append(start)
    if end is not None:
        where += f" AND {column} < ?"
        args.append(end)
    return where


class _Prepared(NamedTuple):
    """A transaction waiting for its group commit: its ops, their keys and encoded data."""

    ops: Sequence[Op]
    keys: list[tuple[str, str]]
    encoded: list[bytes]
    done: asyncio.Future[None]

    def settle(self, outcome: BaseException | None) -> None:
        if self.done.done():
            return  # its caller was cancelled
        if outcome is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(outcome)


class SQLiteStore:
    def __init__(self, path: Path, *, busy_ms: int = 2000, retry_seconds: float = 10.0) -> None:
        self._path = path
        self._busy_ms = busy_ms
        self._retry_seconds = retry_seconds
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._waiting: list[_Prepared] = []
        self._committer: asyncio.Task[None] | None = None
        self.groups = 0
        """Group commits so far (each one ``BEGIN ... COMMIT``), for tests and benchmarks."""

    @classmethod
    async def open(
        cls, path: Path, *, busy_ms: int = 2000, retry_seconds: float = 10.0
    ) -> SQLiteStore:
        """Open (creating) the database at ``path``: the file and its WAL and shared-memory
        files are private to the server's user (0600; SQLite gives the WAL and -shm files the
        database file's mode), a new parent directory too (0700)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private_files(path)
        store = cls(path, busy_ms=busy_ms, retry_seconds=retry_seconds)
        await store._run(store._connect)
        return store

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def _run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store thread; retry it while the file is locked by another
        process. ``fn`` must leave nothing behind when it raises (``_apply`` rolls back)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._retry_seconds
        pause = 0.005
        while True:
            if self._closed:
                raise StoreUnavailable("sqlite store is closed")
            try:
                return await loop.run_in_executor(self._pool, fn)
            except sqlite3.Error as exc:
                if not _busy(exc) or time.monotonic() + pause > deadline:
                    raise StoreUnavailable(f"sqlite store failed: {type(exc).__name__}") from exc
            await asyncio.sleep(pause * (0.5 + random.random()))  # noqa: S311 (jitter)
            pause = min(pause * 2, 0.2)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("sqlite store is closed")
        return self._db

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Item:
        pk, sk, gsi1pk, gsi1sk, version, data = row
        return Item(pk=pk, sk=sk, gsi1pk=gsi1pk, gsi1sk=gsi1sk, version=version, data=_decode(data))

    async def get(self, pk: str, sk: str) -> Item | None:
        def run() -> Item | None:
            row = self._conn.execute(_SELECT_ONE, (pk, sk)).fetchone()
            return self._row(row) if row else None

        return await self._run(run)

    def _apply(self, group: Sequence[_Prepared]) -> list[ConditionFailed | None]:
        """Check and write each transaction of ``group`` in turn, inside one ``BEGIN
        IMMEDIATE``; each one's outcome (``None``: written, or the ``ConditionFailed`` that
        kept it out). Raises (and writes nothing) only if the group itself fails.

        A constant number of statements whatever the number of ops and transactions (one
        SELECT for all the versions, one ``executemany`` per kind of write): each statement
        hands the GIL to the event loop and back. The versions are followed in memory from
        one transaction to the next, and only each key's last write reaches the table.
        """
        wanted: dict[tuple[str, str], None] = {}
        for txn in group:
            wanted.update(dict.fromkeys(txn.keys))
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self._versions(db, list(wanted))
            last: dict[tuple[str, str], tuple[Any, ...] | None] = {}  # None: deleted
            outcomes: list[ConditionFailed | None] = []
            for txn in group:
                ops, keys = txn.ops, txn.keys
                failed = next(
                    (i for i, (op, key) in enumerate(zip(ops, keys, strict=True))
                     if not _holds(current.get(key), op.expect)),
                    None,
                )  # fmt: skip
                if failed is not None:
                    outcomes.append(ConditionFailed(failed))
                    continue
                for op, key, data in zip(ops, keys, txn.encoded, strict=True):
                    if isinstance(op, Put):
                        version = (current.get(key) or 0) + 1
                        current[key] = version
                        last[key] = (*key, op.item.gsi1pk, op.item.gsi1sk, version, data)
                    elif isinstance(op, Delete):
                        current.pop(key, None)
                        last[key] = None
                outcomes.append(None)
            puts = [row for row in last.values() if row is not None]
            deletes = [key for key, row in last.items() if row is None]
            if puts:
                db.executemany(
                    "INSERT OR REPLACE INTO items (pk, sk, gsi1pk, gsi1sk, version, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    puts,
                )
            if deletes:
                db.executemany("DELETE FROM items WHERE pk=? AND sk=?", deletes)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.groups += 1
        return outcomes

    @staticmethod
    def _versions(
        db: sqlite3.Connection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        current: dict[tuple[str, str], int] = {}
        for i in range(0, len(keys), _SELECT_CHUNK):
            chunk = keys[i : i + _SELECT_CHUNK]
            rows = db.execute(
                _VERSIONS.format(",".join(["(?,?)"] * len(chunk))),
                [part for key in chunk for part in key],
            ).fetchall()
            current.update(((pk, sk), version) for pk, sk, version in rows)
        return current

    async def transact(self, ops: Sequence[Op]) -> None:
        """Queued for the next group commit (see the module docstring). Cancelling the caller
        does not take the transaction out of a group already running: like any write whose
        answer was not awaited, it may have landed."""
        check_ops(ops)
        if ops:
            await self._submit(ops)

    async def _submit(self, ops: Sequence[Op]) -> None:
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")
        txn = _Prepared(
            ops=ops,
            keys=[
                (op.item.pk, op.item.sk) if isinstance(op, Put) else (op.pk, op.sk) for op in ops
            ],
            encoded=[_encode(op.item.data) if isinstance(op, Put) else b"" for op in ops],
            done=asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(txn)
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_waiting())
        await txn.done

    async def _commit_waiting(self) -> None:
        """Commit the waiting transactions, a group at a time, until none is left."""
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    outcomes = await self._run(functools.partial(self._apply, group))
                except StoreUnavailable as exc:
                    for txn in group:
                        failure = StoreUnavailable(str(exc))
                        failure.__cause__ = exc.__cause__
                        txn.settle(failure)
                    continue
                except asyncio.CancelledError:
                    for txn in (*group, *self._waiting):
                        txn.done.cancel()
                    self._waiting = []
                    raise
                except Exception as exc:  # not the store's failure: a bug, shown as it is
                    for txn in group:
                        txn.settle(exc)
                    continue
                for txn, outcome in zip(group, outcomes, strict=True):
                    txn.settle(outcome)
        finally:
            self._committer = None

    async def put(self, item: Item, expect: Expect = "any") -> None:
        await self.transact([Put(item=item, expect=expect)])

    async def delete(self, pk: str, sk: str, expect: Expect = "any") -> None:
        await self.transact([Delete(pk=pk, sk=sk, expect=expect)])

    async def put_many(self, items: Sequence[Item]) -> None:
        check_items(items)
        for i in range(0, len(items), 500):
            await self._submit([Put(item=item) for item in items[i : i + 500]])

    async def query(
        self,
        pk: str,
        *,
        prefix: str = "",
        start: str | None = None,
        end: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Item]:
        where = "pk=?"
        args: list[Any] = [pk]
        if prefix:
            # A key range, so the primary key bounds the read (substr() would read the whole
            # partition and filter it).
            where = _in_range(where, args, "sk", prefix, prefix_end(prefix))
        where = _in_range(where, args, "sk", start, end)
        if after is not None:
            where += " AND sk < ?" if descending else " AND sk > ?"
            args.append(after)
        return await self._select(where, args, "sk DESC" if descending else "sk", limit)

    async def query_index(
        self,
        gsi1pk: str,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        args: list[Any] = [gsi1pk]
        where = _in_range("gsi1pk=?", args, "gsi1sk", start, end)
        return await self._select(where, args, "gsi1sk, pk, sk", limit)

    async def _select(
        self, where: str, args: list[Any], order: str, limit: int | None
    ) -> list[Item]:
        """The items ``where`` holds for, in ``order``, at most ``limit`` of them."""
        sql = f"{_SELECT_ITEMS}{where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return await self._run(
            lambda: [self._row(r) for r in self._conn.execute(sql, args).fetchall()]
        )

    async def ping(self) -> None:
        await self._run(lambda: self._conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._pool, db.close)
        self._pool.shutdown(wait=False)
