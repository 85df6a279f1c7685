"""Shares (a patient grants one doctor records and/or groups until ``expires_at``) and the
access log (every doctor read).

Access is decided at the moment of each request from the patient's own items: a share is
active while it is not revoked and ``now < expires_at``; a group share covers whatever records
carry the group *now*, including records added after the share. Revocation is one conditional
write, so the next request after ``DELETE`` returns is refused.

A doctor's read does not load the patient's every share: each share has an index entry in the
patient's partition, ``SHAREIX#<doctor id>#<expires_at, 13 digits>#<share id>`` (no data),
written in the share's own transaction and deleted in its revocation's, so the shares that can
be active for one doctor are one range query (that doctor's entries expiring after now), each
then read and checked itself (the entry is only a pointer: the share item decides). Shares
made before the index existed are indexed the first time a doctor reads that patient: the
marker ``SHAREIX#`` says the partition's shares are all indexed.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from engine.errors import Checks, Invalid, NotFound, Unavailable
from engine.paging import scan, scan_all
from engine.records._model import (
    SHARE_MAX_DAYS,
    SHARE_MAX_GROUPS,
    SHARE_MAX_RECORDS,
    AccessEntry,
    AccessPage,
    Action,
    Share,
    ShareInfo,
    SharePage,
    access_sk,
    check_group,
    is_id,
    record_pk,
    record_sk,
    share_sk,
)
from engine.store import Check, ConditionFailed, Delete, Item, Put
from engine.timeutil import new_id, parse_rfc3339, to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.store import Store

_DAY_MS = 86_400_000
_RETRIES = 5
INDEX_PREFIX = "SHAREIX#"
"""Index entries (and the partition's marker, the bare prefix): see the module's doc."""


def index_sk(share: Share) -> str:
    return f"{INDEX_PREFIX}{share.doctor_id}#{share.expires_at:013d}#{share.id}"


class DoctorLookup(Protocol):
    async def get_doctor(self, doctor_id: str) -> object:
        """The doctor's profile; ``NotFound`` if no doctor has this id."""


def _share(item: Item) -> Share:
    return msgspec.convert(item.data, Share)


def _share_not_found() -> NotFound:
    return NotFound("share not found", code="share_not_found")


class ShareBook:
    def __init__(self, store: Store, doctors: DoctorLookup, clock: Callable[[], int]) -> None:
        self._store = store
        self._doctors = doctors
        self._clock = clock

    async def create(
        self,
        patient_id: str,
        *,
        doctor_id: str,
        record_ids: Sequence[str] | None,
        groups: Sequence[str] | None,
        expires_at: str,
    ) -> ShareInfo:
        """Create a share. ``Invalid`` for an unknown doctor (``unknown_doctor``), a record id that
        is not one of this patient's records (``unknown_record``: the same answer whether it does
        not exist or is someone else's), neither records nor groups, or a bad expiry."""
        now = self._clock()
        checks = Checks()
        ids = list(dict.fromkeys(record_ids or []))
        labels: list[str] = []
        for i, group in enumerate(groups or []):
            label = checks.run(f"groups[{i}]", partial(check_group, group, field=f"groups[{i}]"))
            if label and label not in labels:
                labels.append(label)
        if not ids and not labels and not checks.failed:
            checks.fail(
                "record_ids",
                Invalid("give at least one of record_ids or groups", code="empty_share"),
            )
        if len(ids) > SHARE_MAX_RECORDS:
            checks.fail(
                "record_ids",
                Invalid(
                    f"at most {SHARE_MAX_RECORDS} record_ids per share", code="too_many_records"
                ),
            )
        if len(labels) > SHARE_MAX_GROUPS:
            checks.fail(
                "groups",
                Invalid(f"at most {SHARE_MAX_GROUPS} groups per share", code="too_many_groups"),
            )
        expires = checks.run("expires_at", partial(parse_rfc3339, expires_at, field="expires_at"))
        if expires is not None and (expires <= now or expires > now + SHARE_MAX_DAYS * _DAY_MS):
            checks.fail(
                "expires_at",
                Invalid(
                    f"expires_at must be in the future and at most {SHARE_MAX_DAYS} days ahead",
                    code="invalid_expiry",
                ),
            )
        checks.done()
        assert expires is not None  # checks.done() raised otherwise
        await self._check_doctor(doctor_id)
        for index, record_id in enumerate(ids):
            if not is_id(record_id):
                raise _unknown_record(index)
        share = Share(
            id=new_id(),
            patient_id=patient_id,
            doctor_id=doctor_id,
            record_ids=ids,
            groups=labels,
            expires_at=expires,
            created_at=now,
        )
        pk = record_pk(patient_id)
        ops: list[Check | Put] = [Check(pk=pk, sk=record_sk(r)) for r in ids]
        ops.append(Put(item=self._item(share), expect="absent"))
        ops.append(Put(item=Item(pk=pk, sk=index_sk(share), data={})))
        try:
            await self._store.transact(ops)
        except ConditionFailed as exc:
            if exc.index < len(ids):
                raise _unknown_record(exc.index) from None
            raise
        return share.info(now)

    async def _check_doctor(self, doctor_id: str) -> None:
        unknown = Invalid(
            "doctor_id does not name a doctor", code="unknown_doctor", field="doctor_id"
        )
        if not is_id(doctor_id):
            raise unknown
        try:
            await self._doctors.get_doctor(doctor_id)
        except NotFound:
            raise unknown from None

    @staticmethod
    def _item(share: Share) -> Item:
        return Item(
            pk=record_pk(share.patient_id), sk=share_sk(share.id), data=msgspec.to_builtins(share)
        )

    async def page(
        self, patient_id: str, *, active: bool | None, limit: int, cursor: str | None
    ) -> SharePage:
        now = self._clock()

        def keep(item: Item) -> bool:
            return active is None or _share(item).active_at(now) == active

        items, next_cursor = await scan(
            self._store, record_pk(patient_id), "SHARE#", cursor=cursor, limit=limit, keep=keep
        )
        return SharePage(items=[_share(i).info(now) for i in items], next_cursor=next_cursor)

    async def revoke(self, patient_id: str, share_id: str) -> None:
        """Revoke at once; revoking a revoked share again is a no-op. ``NotFound`` for others'
        shares."""
        if not is_id(share_id):
            raise _share_not_found()
        for _ in range(_RETRIES):
            item = await self._store.get(record_pk(patient_id), share_sk(share_id))
            if item is None:
                raise _share_not_found()
            share = _share(item)
            if share.revoked_at is not None:
                return
            revoked = msgspec.structs.replace(share, revoked_at=self._clock())
            unindex = Delete(pk=item.pk, sk=index_sk(share))
            try:
                await self._store.transact(
                    [Put(item=self._item(revoked), expect=item.version), unindex]
                )
            except ConditionFailed:
                continue
            return
        raise Unavailable("the share is being changed concurrently; retry", code="busy")

    async def all(self, patient_id: str) -> list[tuple[Item, Share]]:
        items = await scan_all(self._store, record_pk(patient_id), "SHARE#")
        return [(item, _share(item)) for item in items]

    async def active_for(self, patient_id: str, doctor_id: str) -> list[Share]:
        """The shares of this patient that are active for this doctor right now: one marker
        read, one range query of this doctor's unexpired index entries, one read a share."""
        now = self._clock()
        pk = record_pk(patient_id)
        if await self._store.get(pk, INDEX_PREFIX) is None:
            await self._index_all(patient_id)
        doctor = f"{INDEX_PREFIX}{doctor_id}#"
        entries = await self._store.query(pk, prefix=doctor, start=f"{doctor}{now + 1:013d}")
        found = await asyncio.gather(
            *(self._store.get(pk, share_sk(e.sk.rpartition("#")[2])) for e in entries)
        )
        shares = [_share(item) for item in found if item is not None]
        return [s for s in shares if s.doctor_id == doctor_id and s.active_at(now)]

    async def _index_all(self, patient_id: str) -> None:
        """Index the shares made before the index (idempotent; racing calls agree), then
        write the marker."""
        pk = record_pk(patient_id)
        now = self._clock()
        entries = [
            Item(pk=pk, sk=index_sk(share), data={})
            for _, share in await self.all(patient_id)
            if share.active_at(now)
        ]
        if entries:
            await self._store.put_many(entries)
        await self._store.put(Item(pk=pk, sk=INDEX_PREFIX, data={}))

    def without_record(self, item: Item, share: Share, record_id: str) -> Put:
        """The conditional write that removes a deleted record from a share."""
        kept = [r for r in share.record_ids if r != record_id]
        return Put(
            item=self._item(msgspec.structs.replace(share, record_ids=kept)),
            expect=item.version,
        )

    async def log(
        self, patient_id: str, doctor_id: str, action: Action, record_ids: list[str]
    ) -> None:
        """Write access-log entries durably (returns only once the store has them)."""
        at = self._clock()
        items = [
            Item(
                pk=record_pk(patient_id),
                sk=access_sk(at, new_id()),
                data={"record_id": r, "doctor_id": doctor_id, "action": action, "at": at},
            )
            for r in record_ids
        ]
        if items:
            await self._store.put_many(items)

    async def access_page(self, patient_id: str, *, limit: int, cursor: str | None) -> AccessPage:
        items, next_cursor = await scan(
            self._store, record_pk(patient_id), "ACCESS#", cursor=cursor, limit=limit
        )
        entries = [access_entry(i.data) for i in items]
        names = {d: await self._doctor_name(d) for d in {e.doctor_id for e in entries}}
        named = [msgspec.structs.replace(e, doctor_name=names[e.doctor_id]) for e in entries]
        return AccessPage(items=named, next_cursor=next_cursor)

    async def _doctor_name(self, doctor_id: str) -> str | None:
        """From the doctors' profile cache (one read a doctor and page at most)."""
        try:
            profile = await self._doctors.get_doctor(doctor_id)
        except NotFound:
            return None
        name = getattr(profile, "name", None)
        return name if isinstance(name, str) else None


def access_entry(data: dict[str, Any]) -> AccessEntry:
    return AccessEntry(
        record_id=str(data["record_id"]),
        doctor_id=str(data["doctor_id"]),
        action="download" if data["action"] == "download" else "list",
        at=to_rfc3339(int(data["at"])),
    )


def _unknown_record(index: int) -> Invalid:
    return Invalid(
        f"record_ids[{index}] is not one of your records",
        code="unknown_record",
        field="record_ids",
        index=index,
    )
