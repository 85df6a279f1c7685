"""The outbox: messages written in the same store transaction as the change they announce,
drained by every replica.

Layout (single table, see :mod:`engine.store`):

==================  ============================  ==============================================
pk                  sk                            what
==================  ============================  ==============================================
``USER#<id>``       ``NOTIF#<created>#<msg id>``  one message to that user (listing, export,
                                                  erasure read the user's partition); while
                                                  ``queued`` also ``gsi1pk="OUTBOX"``,
                                                  ``gsi1sk=<next look>#<msg id>``
==================  ============================  ==============================================

``<created>`` and ``<next look>`` are epoch ms, zero-padded to 13 digits. The message id is
derived from the change and the recipient (:func:`message_id`), so the same change queued
twice is the same item (``absent`` condition) and every send of it carries the same
``Message-ID``: a recipient's mail client shows a resend once.

Enqueue: a module builds its change's ops and appends :meth:`Outbox.put_ops` to the same
``transact`` call; nothing is queued unless the change lands, nothing of the change lands
unless the message is queued.

Drain (every replica, :meth:`Outbox.run`): read the index up to now, then for each item

1. claim it: a put conditioned on the version just read, moving its index entry to
   ``now + lease`` (so if this replica dies the item comes back then) and counting the attempt.
   A losing replica's condition fails and it moves on: one sender at a time per message;
2. send it (timeout: half the lease), through the transport;
3. mark it ``sent`` (index entry removed, context dropped), conditioned on the claim's version;
   or, on failure, put it back in the index after an exponential backoff with jitter, or mark
   it ``failed`` after ``mail_max_attempts`` sends.

A replica killed between 2 and 3 leaves the item claimed; when the lease ends another one
sends it again with the same ``Message-ID`` (at least once to the server, once as the
recipient sees it). A guard per kind may drop an item at send time (a reminder of an
appointment that was cancelled or moved: it is deleted, never sent). An opener per kind may
turn a stored context into the one the templates read, in memory, at send time (the reset
e-mail's code is stored sealed, and opened only to render that e-mail).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from engine.notifications._model import (
    KINDS,
    Contact,
    NotificationPage,
    OutboxItem,
)
from engine.paging import scan, scan_all
from engine.store import ConditionFailed, Delete, Item, Put
from engine.store import keys as store_keys
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from engine.config import Settings
    from engine.notifications._messages import Messages
    from engine.notifications._model import Kind
    from engine.notifications._transports import Transport
    from engine.principal import Principal
    from engine.store import Store

    Guard = Callable[[OutboxItem], Awaitable[bool]]
    Opener = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]

log = logging.getLogger("healthmed.notifications")

INDEX = "OUTBOX"
PREFIX = store_keys.NOTIFICATION_PREFIX
BATCH = 64
"""Items read from the index per look; a full batch is followed by another look at once."""
MAX_BACKOFF_MS = 3_600_000
MIN_GAP = 0.5


class ContactsPort(Protocol):
    """Who an account is to a message (:meth:`engine.accounts.AccountService.contact`)."""

    async def contact(self, user_id: str) -> Contact | None:
        """Name and e-mail of a live account; None if unknown or erased."""


def message_id(kind: str, key: str, recipient_id: str) -> str:
    """The id of the message announcing change ``key`` of ``kind`` to ``recipient_id``."""
    digest = hashlib.sha256(f"{kind}\x1f{key}\x1f{recipient_id}".encode()).hexdigest()
    return digest[:32]


_Contacts = dict[str, "asyncio.Future[Contact | None]"]
"""The contacts one look at the index has read (or is reading), by account id."""

_pk = store_keys.user_pk
_sk = store_keys.notification_sk


def _look(at: int, item_id: str) -> str:
    return f"{max(at, 0):013d}#{item_id}"


def _error_code(exc: BaseException) -> str:
    """What went wrong, without the server's text (it can quote addresses)."""
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    return f"{name} {code}" if isinstance(code, int) else name


class Outbox:
    """Queue messages inside other modules' transactions; deliver them from every replica."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        messages: Messages,
        contacts: ContactsPort,
        transport: Transport | None = None,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.store = store
        self.messages = messages
        self.contacts = contacts
        self.transport = transport
        self.clock = clock
        self.guards: dict[str, Guard] = {"password.reset": self._reset_code_still_valid}
        self.openers: dict[str, Opener] = {}
        """Per kind: (recipient id, stored context) → the context to render with."""
        self.lease_ms = int(settings.mail_lease_seconds * 1000)
        self.send_timeout = settings.mail_lease_seconds / 2
        self._wake = asyncio.Event()
        self._sending = asyncio.Semaphore(2)
        self.last_due = 0
        """Due items the last look of this replica found (at most ``BATCH``): a cheap gauge."""
        self.sent = 0
        self.failed = 0
        self.retried = 0

    # --- enqueue (the public API for other modules) -------------------------------------------
    def put_ops(
        self,
        kind: Kind,
        recipient_id: str,
        context: Mapping[str, Any],
        *,
        key: str,
        at: int,
        due_at: int | None = None,
        to: str | None = None,
    ) -> list[Put]:
        """The store ops that queue one message; append them to the change's ``transact``.

        ``key`` names the change (with ``kind`` and the recipient it makes the message id:
        the same change queued again is the same message); ``at`` is the change's time (ms);
        ``due_at`` holds the message until then (reminders); ``to`` sends to that address
        instead of the account's current one (``password.reset``). ``context`` is what the
        kind's templates read: JSON values only, never a CPF, password or access token.
        The op fails the transaction (``ConditionFailed``) only if this message was already
        queued, i.e. the change was already made.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}")
        data = dict(context)
        item = OutboxItem(
            id=message_id(kind, key, recipient_id),
            kind=kind,
            recipient_id=recipient_id,
            # Still rendered here, though the sender renders a missing one: the release before
            # this one requires the field, and may read this outbox during a rolling update
            # or after a rollback (it would answer 500 on listings and never send the
            # message). The release after this one can stop writing it.
            subject=self.messages.subject(kind, data),
            created_at=at,
            due_at=at if due_at is None else due_at,
            context=data,
            to=to,
        )
        return [Put(item=self._stored(item, item.due_at), expect="absent")]

    def withdraw_ops(self, kind: Kind, recipient_id: str, *, key: str, at: int) -> list[Delete]:
        """Ops that delete the message ``put_ops(kind, recipient_id, ..., key=key, at=at)``
        queued, if it exists. Only for a message that cannot have been sent yet (not due
        before the withdrawing change): a sent message stays in the recipient's history."""
        return [Delete(pk=_pk(recipient_id), sk=_sk(at, message_id(kind, key, recipient_id)))]

    def wake(self) -> None:
        """Look for due messages now (call after committing a change that queued some)."""
        self._wake.set()

    @staticmethod
    def _stored(item: OutboxItem, look_at: int | None) -> Item:
        queued = item.status == "queued" and look_at is not None
        return Item(
            pk=_pk(item.recipient_id),
            sk=_sk(item.created_at, item.id),
            data=item.to_data(),
            gsi1pk=INDEX if queued else None,
            gsi1sk=_look(look_at, item.id) if queued and look_at is not None else None,
        )

    # --- drain --------------------------------------------------------------------------------
    async def depth(self, *, cap: int = 10_000, due_only: bool = True) -> int:
        """Queued messages (due now, or all including future reminders), counted up to ``cap``.

        One index read of at most ``cap`` items: cheap for a gauge scraped every few seconds
        while the queue is short; ``last_due`` costs nothing.
        """
        end = f"{self.clock() + 1:013d}" if due_only else None
        return len(await self.store.query_index(INDEX, end=end, limit=cap))

    async def drain_once(self) -> int:
        """Claim and deliver the due messages of one look; the number looked at."""
        now = self.clock()
        items = await self.store.query_index(INDEX, end=f"{now + 1:013d}", limit=BATCH)
        self.last_due = len(items)
        if items:
            look: _Contacts = {}
            await asyncio.gather(*(self._deliver(item, look) for item in items))
        return len(items)

    async def run(self) -> None:
        """Drain until cancelled: at once when woken, else every ``mail_poll_seconds``."""
        while True:
            try:
                while await self.drain_once() >= BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox drain failed", exc_info=True)
            # At most one look every MIN_GAP seconds even when woken: under a burst of bookings
            # the drainer works in batches instead of competing with every store write.
            await asyncio.sleep(min(MIN_GAP, self.settings.mail_poll_seconds))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.mail_poll_seconds)
            self._wake.clear()

    async def _deliver(self, stored: Item, look: _Contacts | None = None) -> None:
        """Deliver one item; ``look``: the contacts read by the deliveries of the same look."""
        try:
            # A few deliveries at a time: each makes store calls, and on the embedded SQLite
            # store (one writer thread) 64 at once queued every booking's write behind them.
            async with self._sending:
                await self._deliver_one(stored, {} if look is None else look)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("outbox item %s not delivered; retried later", stored.sk, exc_info=True)

    async def _deliver_one(self, stored: Item, look: _Contacts) -> None:
        item = OutboxItem.from_data(stored.data)
        if item.status != "queued":
            return
        now = self.clock()
        claimed = msgspec.structs.replace(item, attempts=item.attempts + 1)
        try:
            await self.store.put(self._stored(claimed, now + self.lease_ms), stored.version)
        except ConditionFailed:
            return  # another replica claimed it (or the index was stale)
        version = stored.version + 1
        guard = self.guards.get(item.kind)
        if guard is not None and not await guard(item):
            await self._drop(claimed, version)
            return
        try:
            if not claimed.subject:  # rendered once, stored with every later state
                subject = self.messages.subject(claimed.kind, dict(claimed.context or {}))
                claimed = msgspec.structs.replace(claimed, subject=subject)
            to, names = await self._addresses(claimed, look)
            opener = self.openers.get(item.kind)
            rendered = claimed
            if opener is not None:  # in memory only: ``claimed`` is what stays stored
                context = await opener(item.recipient_id, item.context or {})
                rendered = msgspec.structs.replace(claimed, context=context)
            message = self.messages.build(rendered, to, names)
            if self.transport is None:
                raise RuntimeError("no mail transport")
            await asyncio.wait_for(self.transport.send(message, to.email), self.send_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(claimed, version, exc)
            return
        done = msgspec.structs.replace(
            claimed, status="sent", sent_at=self.clock(), to=to.email, context=None,
            last_error=None,
        )  # fmt: skip
        await self._mark(done, version)
        self.sent += 1

    async def _addresses(
        self, item: OutboxItem, look: _Contacts
    ) -> tuple[Contact, dict[str, Contact]]:
        """The recipient's address and the participants' names. Each account is read once per
        look (both messages of a booking, a doctor's many requests), when the look's first
        message needs it: an address is never older than the look."""
        context = item.context or {}
        ids = {
            role: str(context[f"{role}_id"])
            for role in ("doctor", "patient")
            if context.get(f"{role}_id")
        }
        wanted = {item.recipient_id, *ids.values()}
        for user_id in wanted:
            if user_id not in look:
                look[user_id] = asyncio.ensure_future(self.contacts.contact(user_id))
        found = dict(zip(wanted, await asyncio.gather(*(look[u] for u in wanted)), strict=True))
        recipient = found.get(item.recipient_id)
        if item.to:
            recipient = Contact(name=recipient.name if recipient else "", email=item.to)
        if recipient is None:
            raise LookupError("the recipient has no address (unknown or erased account)")
        names = {role: found[u] or Contact(name="", email="") for role, u in ids.items()}
        return recipient, names

    async def _failed(self, item: OutboxItem, version: int, exc: BaseException) -> None:
        code = _error_code(exc)
        now = self.clock()
        if item.attempts >= self.settings.mail_max_attempts:
            failed = msgspec.structs.replace(
                item, status="failed", failed_at=now, context=None, last_error=code
            )
            log.warning("outbox %s %s failed after %d attempts: %s", item.kind, item.id,
                        item.attempts, code)  # fmt: skip
            await self._mark(failed, version)
            self.failed += 1
            return
        base = self.settings.mail_retry_seconds * 1000 * 2 ** (item.attempts - 1)
        delay = int(min(base, MAX_BACKOFF_MS) * random.uniform(0.5, 1.0))  # noqa: S311
        log.info("outbox %s %s attempt %d failed (%s); next in %d ms", item.kind, item.id,
                 item.attempts, code, delay)  # fmt: skip
        retry = msgspec.structs.replace(item, last_error=code)
        await self._mark(retry, version, now + delay)
        self.retried += 1

    async def _mark(self, item: OutboxItem, version: int, look_at: int | None = None) -> None:
        """Store the outcome of a send, conditioned on our claim. If the claim was lost (the
        lease ran out and another replica took over), that replica owns the item now."""
        try:
            await self.store.put(self._stored(item, look_at), version)
        except ConditionFailed:
            log.info("outbox %s: claim lost before marking; the new owner finishes it", item.id)

    async def _reset_code_still_valid(self, item: OutboxItem) -> bool:
        """A reset e-mail whose code has expired is deleted unsent, with the code it holds: a
        mail server that refused for longer than the code lives keeps no code in the store."""
        minutes = int((item.context or {}).get("valid_minutes", 30))
        return self.clock() < item.created_at + minutes * 60_000

    async def _drop(self, item: OutboxItem, version: int) -> None:
        try:
            await self.store.transact(
                [
                    Delete(
                        pk=_pk(item.recipient_id), sk=_sk(item.created_at, item.id), expect=version
                    )
                ]
            )
        except ConditionFailed:
            return

    # --- what users see -----------------------------------------------------------------------
    async def list_for(
        self, principal: Principal, *, limit: int = 20, cursor: str | None = None
    ) -> NotificationPage:
        """The messages to the caller, newest first; ``limit`` 1-100, opaque ``cursor``."""
        items, next_cursor = await scan(
            self.store, _pk(principal.user_id), PREFIX, cursor=cursor, limit=limit
        )
        me = await self.contacts.contact(principal.user_id)
        fallback = me.email if me else ""
        page = [self._shown(i).view(fallback) for i in items]
        return NotificationPage(items=page, next_cursor=next_cursor)

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """``{"notifications": [...]}``: every message to the user (as the listing shows it)."""
        items = await scan_all(self.store, _pk(principal.user_id), PREFIX)
        me = await self.contacts.contact(principal.user_id)
        views = [self._shown(i).view(me.email if me else "") for i in items]
        return {"notifications": msgspec.to_builtins(views)}

    def _shown(self, stored: Item) -> OutboxItem:
        """A stored message as its recipient sees it: one still waiting gets its subject
        rendered from its context, as the sender will render it."""
        item = OutboxItem.from_data(stored.data)
        if item.subject or item.context is None:
            return item
        return msgspec.structs.replace(
            item, subject=self.messages.subject(item.kind, dict(item.context))
        )

    async def erase_user(self, principal: Principal) -> None:
        """Delete every message to the user, queued or not (queued ones are never sent)."""
        items = await scan_all(self.store, _pk(principal.user_id), PREFIX)
        for at in range(0, len(items), 100):
            chunk = items[at : at + 100]
            await self.store.transact([Delete(pk=i.pk, sk=i.sk) for i in chunk])
