"""The outbox on both stores: queued with the change, claimed once, retried, failed, resent
with the same Message-ID; delivered over a real SMTP server (aiosmtpd), SES (moto's server)
and files."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import icalendar
import pytest

from engine.config import Settings
from engine.notifications import (
    INDEX,
    Contact,
    FileTransport,
    Messages,
    Outbox,
    OutboxItem,
    SesTransport,
    SmtpTransport,
    parse_mail_url,
)
from engine.principal import Principal
from engine.store import ConditionFailed, Item, Put, Store
from engine.store._dynamodb import DynamoDBStore
from engine.timeutil import new_id
from tests.integration import test_store_contract
from tests.integration.conftest import Clock
from tests.mail_sink import MailSink
from tests.support import timeout

store = test_store_contract.store  # the store fixture over both adapters


class Contacts:
    def __init__(self) -> None:
        self.known: dict[str, Contact] = {}

    def add(self, name: str) -> str:
        user_id = new_id()
        self.known[user_id] = Contact(name=name, email=f"{user_id.lower()}@example.test")
        return user_id

    async def contact(self, user_id: str) -> Contact | None:
        return self.known.get(user_id)


def mail_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mail_max_attempts": 4,
        "mail_retry_seconds": 1.0,
        "mail_lease_seconds": 10.0,
        "mail_poll_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
def contacts() -> Contacts:
    return Contacts()


def outbox_for(
    store: Store, contacts: Contacts, transport: Any, clock: Clock, **settings: Any
) -> Outbox:
    s = mail_settings(**settings)
    return Outbox(s, store, Messages(s), contacts, transport, clock=clock)


def reminder_context(appointment_id: str, doctor_id: str, patient_id: str, start: int) -> dict:
    return {
        "appointment_id": appointment_id,
        "doctor_id": doctor_id,
        "patient_id": patient_id,
        "role": "patient",
        "start_ms": start,
        "end_ms": start + 50 * 60_000,
        "deadline_ms": start - 15 * 60_000,
        "sequence": 0,
        "meeting_url": "https://meet.example.test/room?jwt=x",
    }


async def queue(outbox: Outbox, store: Store, contacts: Contacts, n: int = 1, **kw: Any) -> list:
    """Queue ``n`` confirmation messages to fresh patients; their outbox items."""
    doctor_id = contacts.add("Dra. Ana Souza")
    ids = []
    for i in range(n):
        patient_id = contacts.add(f"Paciente {i}")
        appointment_id = new_id()
        context = reminder_context(
            appointment_id, doctor_id, patient_id, outbox.clock() + 86_400_000
        )
        ops = outbox.put_ops(
            "appointment.confirmed",
            patient_id,
            context,
            key=appointment_id,
            at=outbox.clock(),
            **kw,
        )
        await store.transact(ops)
        ids.append((patient_id, ops[0].item.sk))
    return ids


async def stored(store: Store, patient_id: str, sk: str) -> OutboxItem:
    item = await store.get(f"USER#{patient_id}", sk)
    assert item is not None
    return OutboxItem.from_data(item.data)


async def drain_until_idle(*outboxes: Outbox, clock: Clock | None = None) -> None:
    for _ in range(200):
        counts = await asyncio.gather(*(o.drain_once() for o in outboxes))
        if not any(counts):
            return
    raise AssertionError("the outbox did not empty")


async def test_a_message_is_queued_only_with_its_change(
    store: Store, contacts: Contacts, clock: Clock
) -> None:
    """A change whose transaction fails queues nothing; one that lands queues its message."""
    outbox = outbox_for(store, contacts, None, clock)
    patient_id = contacts.add("Maria")
    context = reminder_context("A1", contacts.add("Dr. João"), patient_id, clock.now + 3_600_000)
    ops = outbox.put_ops("appointment.confirmed", patient_id, context, key="A1", at=clock.now)
    # The release before this one requires a subject on every stored message (rolling
    # updates, rollbacks): it is still written with the change.
    assert ops[0].item.data["subject"].startswith("Consulta confirmada: ")
    change = Put(item=Item(pk="APPT#A1", sk="APPT", data={}), expect="present")  # missing
    with pytest.raises(ConditionFailed):
        await store.transact([change, *ops])
    assert await outbox.depth() == 0
    await store.transact([Put(item=Item(pk="APPT#A1", sk="APPT", data={})), *ops])
    assert await outbox.depth() == 1
    with pytest.raises(ConditionFailed):  # the same change queued again is the same message
        await store.transact(ops)


async def test_a_message_stored_without_a_subject_is_sent_with_it_rendered(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A message queued without a subject (as the next release will queue it) is listed and
    sent with its subject rendered from its context, which is then kept."""
    outbox = outbox_for(store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock)
    patient_id = contacts.add("Maria")
    context = reminder_context("A9", contacts.add("Dr. João"), patient_id, clock.now + 3_600_000)
    ops = outbox.put_ops("appointment.confirmed", patient_id, context, key="A9", at=clock.now)
    del ops[0].item.data["subject"]
    await store.transact(ops)
    await drain_until_idle(outbox)
    [received] = sink.messages()
    assert str(received.message["Subject"]).startswith("Consulta confirmada: ")
    item = await stored(store, patient_id, ops[0].item.sk)
    assert item.subject == str(received.message["Subject"])


async def test_smtp_delivery_marks_sent_with_a_stable_message_id(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A drained message reaches the SMTP server once, with Message-ID <id@healthmed>, and is
    stored as sent without its context."""
    outbox = outbox_for(store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock)
    [(patient_id, sk)] = await queue(outbox, store, contacts)
    await drain_until_idle(outbox)
    [received] = sink.messages()
    item = await stored(store, patient_id, sk)
    assert item.status == "sent"
    assert item.context is None
    assert item.attempts == 1
    assert received.message_id == f"<{item.id}@healthmed>"
    assert received.to == [contacts.known[patient_id].email]
    assert item.subject.startswith("Consulta confirmada: ")  # rendered when sent, then kept
    assert str(received.message["Subject"]) == item.subject
    assert item.to == contacts.known[patient_id].email
    assert await outbox.depth(due_only=False) == 0


async def test_two_replicas_deliver_each_message_once(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """Two outboxes draining the same store at once send each message exactly once."""
    if isinstance(store, DynamoDBStore):
        # moto's server applies concurrent conditional writes without a lock (DynamoDB does
        # not); the claim's condition on DynamoDB is proven by the stale-claim test below.
        pytest.skip("moto does not serialise concurrent conditional writes")
    transport = SmtpTransport(parse_mail_url(sink.url), timeout=5)
    a = outbox_for(store, contacts, transport, clock)
    b = outbox_for(store, contacts, transport, clock)
    queued = await queue(a, store, contacts, n=30)
    await drain_until_idle(a, b)
    ids = [r.message_id for r in sink.messages()]
    assert len(ids) == 30
    assert len(set(ids)) == 30
    assert a.sent + b.sent == 30
    for patient_id, sk in queued:
        assert (await stored(store, patient_id, sk)).status == "sent"


async def test_a_claim_from_a_stale_read_sends_nothing(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A replica whose index read predates another's claim and send cannot claim: the
    version condition fails, so it sends nothing."""
    transport = SmtpTransport(parse_mail_url(sink.url), timeout=5)
    a = outbox_for(store, contacts, transport, clock)
    b = outbox_for(store, contacts, transport, clock)
    await queue(a, store, contacts, n=5)
    stale = await store.query_index(INDEX)
    assert len(stale) == 5
    await drain_until_idle(a)
    await asyncio.gather(*(b._deliver(item) for item in stale))
    assert len(sink.messages()) == 5
    assert b.sent == 0


class _SendThenDie:
    """A transport that delivers, then never returns (the replica dies before marking)."""

    def __init__(self, inner: SmtpTransport) -> None:
        self.inner = inner
        self.name = "smtp"
        self.sent = asyncio.Event()
        """Set once the SMTP exchange is over: cancelling during it could be swallowed by the
        SMTP client and leave the task asleep for an hour (the suite hung there)."""

    async def send(self, message: Any, to: str) -> None:
        await self.inner.send(message, to)
        self.sent.set()
        await asyncio.sleep(3600)

    async def close(self) -> None:
        return None


async def test_a_replica_dying_after_the_send_is_resent_with_the_same_message_id(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """Killed between send and mark, the message comes back after the lease and another
    replica sends it again with the same Message-ID; then it is sent, once as a mail client
    shows it."""
    smtp = SmtpTransport(parse_mail_url(sink.url), timeout=5)
    transport = _SendThenDie(smtp)
    dying = outbox_for(store, contacts, transport, clock)
    [(patient_id, sk)] = await queue(dying, store, contacts)
    task = asyncio.create_task(dying.drain_once())
    await asyncio.wait_for(transport.sent.wait(), timeout(10))
    await sink.await_for(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout(10))
    other = outbox_for(store, contacts, smtp, clock)
    assert await other.drain_once() == 0  # leased: hidden from the others
    clock.advance(int(timeout(10) * 1000) + 1)
    await drain_until_idle(other)
    first, second = sink.messages()
    assert first.message_id == second.message_id
    item = await stored(store, patient_id, sk)
    assert item.status == "sent"
    assert item.attempts == 2


async def test_a_refusing_server_gets_every_message_once_it_accepts(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """451 for a while: each message is retried with backoff and arrives exactly once."""
    outbox = outbox_for(store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock)
    queued = await queue(outbox, store, contacts, n=3)
    sink.refuse_next = 6
    for _ in range(6):
        await drain_until_idle(outbox)
        clock.advance(8_000)  # past the longest backoff so far (1 s, 2 s, 4 s)
    await drain_until_idle(outbox)
    ids = [r.message_id for r in sink.messages()]
    assert len(ids) == 3
    assert len(set(ids)) == 3
    for patient_id, sk in queued:
        item = await stored(store, patient_id, sk)
        assert item.status == "sent"
        assert item.attempts >= 2
    assert outbox.retried == 6


async def test_backoff_doubles_with_jitter(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """After the k-th failure the next attempt waits base*2^(k-1), jittered down to half."""
    sink.mode = "refuse"
    outbox = outbox_for(
        store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock,
        mail_max_attempts=8,
    )  # fmt: skip
    [(patient_id, sk)] = await queue(outbox, store, contacts)
    for attempt in range(1, 5):
        await outbox.drain_once()
        raw = await store.get(f"USER#{patient_id}", sk)
        assert raw is not None
        assert raw.gsi1pk == INDEX
        assert raw.gsi1sk is not None
        wait = int(raw.gsi1sk.split("#")[0]) - clock.now
        full = 1000 * 2 ** (attempt - 1)
        assert full // 2 <= wait <= full
        assert await outbox.drain_once() == 0  # not due yet
        clock.advance(wait)


async def test_a_permanently_failing_message_ends_failed_and_others_flow(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A message the server always rejects is `failed` after the configured attempts; a
    message to a working address is delivered meanwhile."""

    class Picky:
        name = "smtp"

        def __init__(self, bad: str) -> None:
            self.bad = bad
            self.smtp = SmtpTransport(parse_mail_url(sink.url), timeout=5)

        async def send(self, message: Any, to: str) -> None:
            if to == self.bad:
                raise ConnectionRefusedError("no")
            await self.smtp.send(message, to)

        async def close(self) -> None:
            return None

    outbox = outbox_for(store, contacts, None, clock, mail_max_attempts=3)
    (bad_id, bad_sk), (good_id, good_sk) = await queue(outbox, store, contacts, n=2)
    outbox.transport = Picky(contacts.known[bad_id].email)
    for _ in range(4):
        await drain_until_idle(outbox)
        clock.advance(10_000)
    failed = await stored(store, bad_id, bad_sk)
    assert failed.status == "failed"
    assert failed.attempts == 3
    assert failed.last_error == "ConnectionRefusedError"
    assert failed.context is None
    assert (await stored(store, good_id, good_sk)).status == "sent"
    assert len(sink.messages()) == 1
    assert await outbox.depth(due_only=False) == 0


async def test_a_guard_drops_a_stale_reminder(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A reminder is held until its time, then deleted unsent when its guard says no."""
    outbox = outbox_for(store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock)
    seen: list[str] = []

    async def guard(item: OutboxItem) -> bool:
        seen.append(item.id)
        return False

    outbox.guards["appointment.reminder"] = guard
    patient_id = contacts.add("Maria")
    context = reminder_context("A2", contacts.add("Dr. João"), patient_id, clock.now + 7_200_000)
    ops = outbox.put_ops(
        "appointment.reminder", patient_id, context, key="A2:60", at=clock.now,
        due_at=clock.now + 3_600_000,
    )  # fmt: skip
    await store.transact(ops)
    assert await outbox.drain_once() == 0  # not due
    clock.advance(3_600_000)
    await drain_until_idle(outbox)
    assert len(seen) == 1
    assert sink.messages() == []
    assert await store.get(ops[0].item.pk, ops[0].item.sk) is None


async def test_a_reset_e_mail_whose_code_expired_is_deleted_unsent(
    store: Store, contacts: Contacts, clock: Clock, sink: MailSink
) -> None:
    """A password.reset still queued when its code expires (the mail server refused until
    then) is deleted with the code it holds, never sent; a fresh one is sent."""
    outbox = outbox_for(store, contacts, SmtpTransport(parse_mail_url(sink.url), timeout=5), clock)
    user_id = contacts.add("Maria")
    late = outbox.put_ops(
        "password.reset", user_id, {"code": "late-code", "valid_minutes": 30}, key="r1",
        at=clock.now - 31 * 60_000, to="maria@example.com",
    )  # fmt: skip
    fresh = outbox.put_ops(
        "password.reset", user_id, {"code": "fresh-code", "valid_minutes": 30}, key="r2",
        at=clock.now, to="maria@example.com",
    )  # fmt: skip
    await store.transact([*late, *fresh])
    await drain_until_idle(outbox)
    assert await store.get(late[0].item.pk, late[0].item.sk) is None
    [received] = sink.messages()
    text = received.message.get_body(("plain",)).get_content()
    assert "Code: fresh-code" in text


async def test_the_file_transport_writes_parseable_eml_with_an_invitation(
    store: Store, contacts: Contacts, clock: Clock, tmp_path: Path
) -> None:
    """The file transport writes one .eml a message: text, HTML and a METHOD:REQUEST part
    whose UID, SEQUENCE and UTC times parse back with icalendar."""
    folder = tmp_path / "mail"
    outbox = outbox_for(store, contacts, FileTransport(folder), clock)
    [(patient_id, sk)] = await queue(outbox, store, contacts)
    await drain_until_idle(outbox)
    [path] = list(folder.glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    item = await stored(store, patient_id, sk)
    assert path.name == f"{item.id}.eml"
    assert message["Message-ID"] == f"<{item.id}@healthmed>"
    types = [part.get_content_type() for part in message.walk()]
    assert types == ["multipart/alternative", "text/plain", "text/html", "text/calendar"]
    ics_part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert ics_part.get_param("method") == "REQUEST"
    cal = icalendar.Calendar.from_ical(ics_part.get_content())
    assert cal["METHOD"] == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert str(event["UID"]).endswith("@healthmed")
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART").utcoffset().total_seconds() == 0
    assert "Olá, Paciente 0." in message.get_body(("plain",)).get_content()


@pytest.fixture
async def ses(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SesTransport]:
    import aioboto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    async with aioboto3.Session().client("sesv2", region_name="us-east-1") as client:
        await client.create_email_identity(EmailIdentity="no-reply@healthmed.local")
    transport = SesTransport("us-east-1", "Health&Med <no-reply@healthmed.local>", timeout=5)
    yield transport
    await transport.close()


async def test_ses_sends_the_raw_message(
    store: Store, contacts: Contacts, clock: Clock, ses: SesTransport
) -> None:
    """SES v2 SendEmail (raw content, through aioboto3 against moto's server) receives the
    message as built, Message-ID included."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    outbox = outbox_for(store, contacts, ses, clock)
    [(patient_id, sk)] = await queue(outbox, store, contacts)
    await drain_until_idle(outbox)
    item = await stored(store, patient_id, sk)
    assert item.status == "sent"
    sent = [
        m for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
        if f"<{item.id}@healthmed>" in getattr(m, "raw_data", "")
    ]  # fmt: skip
    assert len(sent) == 1
    assert sent[0].destinations[0] == contacts.known[patient_id].email


async def test_listing_is_newest_first_and_paginated(
    store: Store, contacts: Contacts, clock: Clock
) -> None:
    """A user's messages list newest first, page by page, and leave with their erasure."""
    outbox = outbox_for(store, contacts, None, clock)
    patient_id = contacts.add("Maria")
    doctor_id = contacts.add("Dr. João")
    for i in range(5):
        clock.advance(1000)
        context = reminder_context(f"A{i}", doctor_id, patient_id, clock.now + 86_400_000)
        await store.transact(
            outbox.put_ops("appointment.confirmed", patient_id, context, key=f"A{i}", at=clock.now)
        )
    me = Principal(user_id=patient_id, role="patient", jti="j", issued_at=0, expires_at=0)
    first = await outbox.list_for(me, limit=3)
    assert [v.status for v in first.items] == ["queued"] * 3
    assert all(v.subject.startswith("Consulta confirmada: ") for v in first.items)
    assert first.next_cursor
    second = await outbox.list_for(me, limit=3, cursor=first.next_cursor)
    assert len(second.items) == 2
    assert second.next_cursor is None
    times = [v.created_at for v in first.items + second.items]
    assert times == sorted(times, reverse=True)
    assert first.items[0].to == contacts.known[patient_id].email
    assert len((await outbox.export_user(me))["notifications"]) == 5
    await outbox.erase_user(me)
    assert (await outbox.list_for(me)).items == []
    assert await outbox.depth(due_only=False) == 0
