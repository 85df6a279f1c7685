"""DynamoDB adapter of the store port: the production store, reached through ``aioboto3``.

Single-table design. One table holds every item of the port (the key layout is in ``_port``):

==========  ====  =========================================================================
attribute   type  meaning
==========  ====  =========================================================================
``pk``      S     partition key (table HASH key)
``sk``      S     sort key (table RANGE key)
``gsi1pk``  S     HASH key of the global secondary index ``gsi1`` (projection ALL); absent
                  when the item is not indexed, so the index stays sparse
``gsi1sk``  S     RANGE key of ``gsi1``; present whenever ``gsi1pk`` is
``v``       N     the item's version: 1 on first write, +1 on every overwrite
``d``       S     the item's data as one JSON string
==========  ====  =========================================================================

``d`` is a JSON string rather than a DynamoDB map because a map cannot round-trip the port's
data exactly: DynamoDB numbers come back as ``Decimal`` (``1.0`` and ``1`` become the same
number, floats need converting both ways, precision stops at 38 digits), and sets and empty
values have their own rules. The same msgspec JSON the SQLite adapter stores gives both
adapters identical bytes in and identical values out. No query filters on data fields, so
nothing is lost by keeping ``d`` opaque. An item is limited to DynamoDB's 400 KB.

Versions without a read. Every write of a ``Put`` is an ``UpdateItem`` (or the ``Update``
action inside ``TransactWriteItems``) whose expression sets
``v = if_not_exists(v, 0) + 1`` next to ``d`` and the index keys (an index key that is ``None``
is REMOVEd, so a re-put without index keys drops the item from ``gsi1``). The store computes the
next version atomically on the server, exactly as the SQLite adapter does inside its
transaction. Conditions: ``"absent"`` is ``attribute_not_exists(pk)``, ``"present"`` is
``attribute_exists(pk)``, a version ``n`` is ``v = n``.

Transactions are ``TransactWriteItems`` (at most 100 actions, each item at most once): all or
nothing on the server. A cancelled transaction's ``CancellationReasons`` name the first
``ConditionalCheckFailed`` action, reported as ``ConditionFailed(index)`` with the index in the
caller's list. A ``TransactionConflict`` (another transaction on the same item in flight) wrote
nothing, so it is retried a few times before giving up with ``StoreUnavailable``. Each call sends
a fresh ``ClientRequestToken``, so botocore's own retry of a request whose answer was lost is
idempotent on DynamoDB instead of failing its own condition (moto ignores the token).
Conditional single writes go through a one-item transaction for the same reason.

``put_many`` is concurrent ``UpdateItem`` calls (at most ``_PUT_MANY_CONCURRENCY`` in flight),
not ``BatchWriteItem``: a batch write replaces the whole item and cannot increment ``v``, so it
would reset versions to 1 on overwrite and let a stale optimistic writer holding version 1
succeed (ABA). Costs are the same per item; only the round trips differ.

Reads: ``get`` and ``query`` are strongly consistent. ``query_index`` reads a GSI, which
DynamoDB only offers eventually consistent: an item written a moment ago may be missing or
stale there (SQLite shows it at once). Index reads serve rebuilds and sweeps, never a decision.
Items sharing a ``gsi1sk`` are returned in ``(pk, sk)`` order like SQLite; DynamoDB does not
order them, so the adapter reads the whole tie group at the cut before sorting.

Errors: a failed condition is ``ConditionFailed`` (``ConditionFailed(0)`` for a conditional
single put or delete, a one-item transaction); any other botocore, aiohttp or socket failure is
``StoreUnavailable`` carrying only the operation and the error code (never the service's
message, which can quote item values).

Table creation is explicit: ``open(table, create=True)`` creates the table (PAY_PER_REQUEST,
``gsi1``) if it does not exist, for tests and local development; ``open_store`` asks for it
with ``dynamodb://<table>?create=true``. Without it (production) the table must already exist
(provisioned by infrastructure code) and ``open`` fails with ``StoreUnavailable`` if it does not.
The endpoint and region come from the standard AWS variables: ``AWS_ENDPOINT_URL_DYNAMODB`` or
``AWS_ENDPOINT_URL`` (resolved by botocore), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

import aioboto3
import aiohttp
import msgspec
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from engine.store._port import (
    Check,
    ConditionFailed,
    Delete,
    Expect,
    Item,
    Op,
    Put,
    StoreUnavailable,
    check_ops,
    prefix_end,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
        UniversalAttributeValueTypeDef,
    )

    Values = dict[str, UniversalAttributeValueTypeDef]

log = logging.getLogger("healthmed.store")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode

INDEX = "gsi1"
_PUT_MANY_CONCURRENCY = 16
_CONFLICT_RETRIES = 4
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError)

DEFAULT_CONFIG = AioConfig(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=64,
)
"""Short timeouts and few retries: a store that does not answer fails the call (``Unavailable``)
quickly instead of holding the request for botocore's default minute and ten attempts."""


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> dict[str, UniversalAttributeValueTypeDef]:
    return {"pk": _s(pk), "sk": _s(sk)}


def _condition(expect: Expect, values: Values) -> str | None:
    """The ConditionExpression for ``expect``; adds its placeholder values to ``values``."""
    if expect == "any":
        return None
    if expect == "absent":
        return "attribute_not_exists(pk)"
    if expect == "present":
        return "attribute_exists(pk)"
    values[":expected"] = _n(expect)
    return "v = :expected"


def _put_update(item: Item, expect: Expect) -> tuple[str, str | None, Values]:
    """UpdateExpression, ConditionExpression and values that write ``item`` as a whole."""
    if item.gsi1pk is not None and item.gsi1sk is None:
        raise ValueError("an item with gsi1pk needs gsi1sk (DynamoDB indexes only both together)")
    values: Values = {":zero": _n(0), ":one": _n(1), ":d": _s(_encode(item.data).decode())}
    sets = ["v = if_not_exists(v, :zero) + :one", "d = :d"]
    removes = []
    for name, value in (("gsi1pk", item.gsi1pk), ("gsi1sk", item.gsi1sk)):
        if value is None:
            removes.append(name)
        else:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = _s(value)
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    return expression, _condition(expect, values), values


def _item(raw: Mapping[str, AttributeValueTypeDef]) -> Item:
    def text(name: str) -> str | None:
        value = raw.get(name)
        return None if value is None else value["S"]

    return Item(
        pk=raw["pk"]["S"],
        sk=raw["sk"]["S"],
        gsi1pk=text("gsi1pk"),
        gsi1sk=text("gsi1sk"),
        version=int(raw["v"]["N"]),
        data=_decode(raw["d"]["S"]),
    )


def _key_condition(
    attr: str,
    lower: tuple[str, bool] | None,
    upper: str | None,
    values: Values,
) -> str | None:
    """A sort-key condition for ``lower`` (value, inclusive) and exclusive ``upper``.

    DynamoDB offers one comparison on the sort key and BETWEEN is inclusive at both ends, so
    the condition may admit the bound items themselves; the caller filters them out. Returns
    the empty string when no item can match.
    """
    if upper == "":
        return ""
    if lower is not None and lower[0] == "":
        lower = None  # DynamoDB keys are never empty, so every stored key is above ""
    if lower is not None and upper is not None:
        if upper <= lower[0]:
            return ""
        values[":lo"], values[":hi"] = _s(lower[0]), _s(upper)
        return f"{attr} BETWEEN :lo AND :hi"
    if lower is not None:
        values[":lo"] = _s(lower[0])
        return f"{attr} {'>=' if lower[1] else '>'} :lo"
    if upper is not None:
        values[":hi"] = _s(upper)
        return f"{attr} < :hi"
    return None


def _tightest_lower(bounds: list[tuple[str, bool]]) -> tuple[str, bool] | None:
    # max by value; at equal values the exclusive bound (False) is the tighter one
    return max(bounds, key=lambda b: (b[0], not b[1])) if bounds else None


class DynamoDBStore:
    def __init__(self, table: str, client: DynamoDBClient, exit_stack: contextlib.AsyncExitStack):
        self._table = table
        self._client: DynamoDBClient | None = client
        self._exit_stack = exit_stack

    @classmethod
    async def open(
        cls,
        table: str,
        *,
        endpoint_url: str | None = None,
        create: bool = False,
        config: AioConfig | None = None,
    ) -> DynamoDBStore:
        """Open one client on ``table``; ``create`` makes the table if it does not exist.

        ``endpoint_url`` overrides the AWS variables (tests point it at moto). Fails with
        ``StoreUnavailable`` if DynamoDB does not answer or the table is missing.
        """
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"invalid DynamoDB table name: {table!r}")
        stack = contextlib.AsyncExitStack()
        session = aioboto3.Session()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        try:
            client: DynamoDBClient = await stack.enter_async_context(
                session.client(
                    "dynamodb",
                    region_name=region,
                    endpoint_url=endpoint_url,
                    config=config or DEFAULT_CONFIG,
                )
            )
            store = cls(table, client, stack)
            await store._ensure_table(create)
        except BaseException:
            await stack.aclose()
            raise
        return store

    async def _ensure_table(self, create: bool) -> None:
        client = self._conn
        try:
            await client.describe_table(TableName=self._table)
            return
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                self._fail("describe_table", exc)
            if not create:
                raise StoreUnavailable(f"dynamodb table {self._table} does not exist") from None
        except _ERRORS as exc:
            self._fail("describe_table", exc)
        try:
            await client.create_table(
                TableName=self._table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"}
                    for name in ("pk", "sk", "gsi1pk", "gsi1sk")
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": INDEX,
                        "KeySchema": [
                            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                            {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )
            log.info("created dynamodb table %s", self._table)
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # another replica created it first
                self._fail("create_table", exc)
        except _ERRORS as exc:
            self._fail("create_table", exc)
        try:
            await client.get_waiter("table_exists").wait(
                TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except _ERRORS as exc:
            self._fail("create_table", exc)

    @property
    def _conn(self) -> DynamoDBClient:
        if self._client is None:
            raise StoreUnavailable("dynamodb store is closed")
        return self._client

    @staticmethod
    def _fail(operation: str, exc: BaseException) -> NoReturn:
        """Raise ``StoreUnavailable`` naming only the operation and the error code."""
        reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        log.warning("dynamodb %s failed: %s", operation, reason)
        raise StoreUnavailable(f"dynamodb {operation} failed: {reason}") from None

    async def get(self, pk: str, sk: str) -> Item | None:
        try:
            response = await self._conn.get_item(
                TableName=self._table, Key=_key(pk, sk), ConsistentRead=True
            )
        except _ERRORS as exc:
            self._fail("get_item", exc)
        raw = response.get("Item")
        return _item(raw) if raw else None

    async def put(self, item: Item, expect: Expect = "any") -> None:
        if expect != "any":
            # Through TransactWriteItems for its ClientRequestToken: a plain conditional
            # UpdateItem retried by botocore after a lost reply would fail its own condition
            # (a false ConditionFailed: a spurious ``Conflict``, or a refresh family revoked).
            await self.transact([Put(item=item, expect=expect)])
        else:
            await self._write_alone(Put(item=item))

    async def delete(self, pk: str, sk: str, expect: Expect = "any") -> None:
        if expect != "any":
            await self.transact([Delete(pk=pk, sk=sk, expect=expect)])  # idempotent, as in put
        else:
            await self._write_alone(Delete(pk=pk, sk=sk))

    async def _write_alone(self, op: Put | Delete) -> None:
        """An unconditional put or delete as a request of its own (UpdateItem, DeleteItem):
        with no condition it cannot fail one, and a retry by botocore is harmless."""
        action = self._action(op)
        assert action is not None
        try:
            if isinstance(op, Put):
                await self._conn.update_item(**action["Update"])
            else:
                await self._conn.delete_item(**action["Delete"])
        except _ERRORS as exc:
            self._fail("update_item" if isinstance(op, Put) else "delete_item", exc)

    def _action(self, op: Op) -> TransactWriteItemTypeDef | None:
        """The TransactWriteItems action for ``op``; None for a check that checks nothing.

        A single put or delete sends the same request alone (UpdateItem, DeleteItem).
        """
        if isinstance(op, Put):
            expression, condition, values = _put_update(op.item, op.expect)
            update: TransactWriteItemTypeDef = {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(op.item.pk, op.item.sk),
                    "UpdateExpression": expression,
                    "ExpressionAttributeValues": values,
                }
            }
            if condition is not None:
                update["Update"]["ConditionExpression"] = condition
            return update
        values = {}
        condition = _condition(op.expect, values)
        if isinstance(op, Delete):
            action: TransactWriteItemTypeDef = {
                "Delete": {"TableName": self._table, "Key": _key(op.pk, op.sk)}
            }
            if condition is not None:
                action["Delete"]["ConditionExpression"] = condition
            if values:
                action["Delete"]["ExpressionAttributeValues"] = values
            return action
        assert isinstance(op, Check)
        if condition is None:
            return None
        action = {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": _key(op.pk, op.sk),
                "ConditionExpression": condition,
            }
        }
        if values:
            action["ConditionCheck"]["ExpressionAttributeValues"] = values
        return action

    async def transact(self, ops: Sequence[Op]) -> None:
        check_ops(ops)
        actions: list[TransactWriteItemTypeDef] = []
        origin: list[int] = []  # origin[i]: the caller's index of actions[i]
        for index, op in enumerate(ops):
            action = self._action(op)
            if action is not None:
                actions.append(action)
                origin.append(index)
        if not actions:
            return
        token = str(uuid.uuid4())
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                await self._conn.transact_write_items(
                    TransactItems=actions, ClientRequestToken=token
                )
                return
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    self._fail("transact_write_items", exc)
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    raise ConditionFailed(origin[codes.index("ConditionalCheckFailed")]) from None
                if "TransactionConflict" not in codes or attempt == _CONFLICT_RETRIES:
                    self._fail("transact_write_items", exc)
            except _ERRORS as exc:
                self._fail("transact_write_items", exc)
            # Nothing was written: back off (jittered) and try again with a new token, since a
            # token names one request's outcome and this one was refused.
            token = str(uuid.uuid4())
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311

    async def put_many(self, items: Sequence[Item]) -> None:
        pending = iter(items)

        async def worker() -> None:
            for item in pending:  # the workers share one iterator: each item is written once
                await self.put(item)

        workers = [
            asyncio.create_task(worker()) for _ in range(min(_PUT_MANY_CONCURRENCY, len(items)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _collect(
        self,
        request: QueryInputTypeDef,
        keep: Callable[[Item], bool],
        limit: int | None,
        tie: Callable[[Item], str] | None = None,
    ) -> list[Item]:
        """Run a Query page by page (1 MB each) until ``limit`` kept items are in hand.

        With ``tie``, reading goes on past the limit until the tie value changes, so a group of
        equal values cut by the limit is complete before the caller sorts it.
        """
        found: list[Item] = []
        while True:
            if limit is not None:
                request["Limit"] = max(limit - len(found), 0) + (25 if tie else 1)
            try:
                page = await self._conn.query(**request)
            except _ERRORS as exc:
                self._fail("query", exc)
            for raw in page["Items"]:
                item = _item(raw)
                if not keep(item):
                    continue
                past_limit = limit is not None and len(found) >= limit
                if past_limit and (tie is None or tie(item) != tie(found[-1])):
                    return found
                found.append(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return found
            request["ExclusiveStartKey"] = last

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
        if limit is not None and limit < 0:
            limit = None  # as SQLite's LIMIT -1
        if limit == 0:
            return []
        lowers = [(b, True) for b in (prefix or None, start) if b is not None]
        uppers = [b for b in (prefix_end(prefix) if prefix else None, end) if b is not None]
        if after is not None:
            if descending:
                uppers.append(after)
            else:
                lowers.append((after, False))
        values: Values = {":pk": _s(pk)}
        if prefix and start is None and end is None and after is None:
            values[":prefix"] = _s(prefix)
            sk_condition: str | None = "begins_with(sk, :prefix)"
        else:
            sk_condition = _key_condition(
                "sk", _tightest_lower(lowers), min(uppers) if uppers else None, values
            )
        if sk_condition == "":
            return []

        def keep(item: Item) -> bool:
            sk = item.sk
            return (
                sk.startswith(prefix)
                and (start is None or sk >= start)
                and (end is None or sk < end)
                and (after is None or (sk < after if descending else sk > after))
            )

        request: QueryInputTypeDef = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk" + (f" AND {sk_condition}" if sk_condition else ""),
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            "ScanIndexForward": not descending,
        }
        return await self._collect(request, keep, limit)

    async def query_index(
        self,
        gsi1pk: str,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        if limit is not None and limit < 0:
            limit = None
        if limit == 0:
            return []
        values: Values = {":pk": _s(gsi1pk)}
        sk_condition = _key_condition(
            "gsi1sk", (start, True) if start is not None else None, end, values
        )
        if sk_condition == "":
            return []

        def keep(item: Item) -> bool:
            sk = item.gsi1sk or ""
            return (start is None or sk >= start) and (end is None or sk < end)

        request: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": INDEX,
            "KeyConditionExpression": "gsi1pk = :pk"
            + (f" AND {sk_condition}" if sk_condition else ""),
            "ExpressionAttributeValues": values,
        }
        found = await self._collect(request, keep, limit, tie=lambda item: item.gsi1sk or "")
        found.sort(key=lambda item: (item.gsi1sk or "", item.pk, item.sk))
        return found if limit is None else found[:limit]

    async def ping(self) -> None:
        try:
            await self._conn.describe_table(TableName=self._table)
        except _ERRORS as exc:
            self._fail("describe_table", exc)

    async def close(self) -> None:
        if self._client is not None:
            self._client = None
            await self._exit_stack.aclose()


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
