"""The e-mails booking changes queue (docs/API.md, "Notifications and calendar").

Each builder returns outbox ops to append to the transaction of the change they announce, so
a message exists exactly when its change does. Who gets what:

==========================  =========================================  ======================
change                      to                                         invitation
==========================  =========================================  ======================
requested                   doctor (new request), patient (receipt)
confirmed                   patient and doctor, each with their link   ``REQUEST``, SEQUENCE
                                                                       of the appointment
refused, expired            patient
cancelled                   the other side (both when by ``system``)   ``CANCEL``, SEQUENCE+1
rescheduled (move applied)  patient and doctor (their link once        ``REQUEST``, SEQUENCE+1
                            confirmed); a confirmed one's reminders
                            move with it
confirmed (reminders)       both, ``reminder_minutes`` before start;
                            none whose time passed at confirmation
==========================  =========================================  ======================

A reminder is checked again when it is due (:meth:`BookingNotices.reminder_current`): an
appointment cancelled or moved since sends none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.notifications import CalendarEvent

if TYPE_CHECKING:
    from engine.booking._meeting import MeetingProvider
    from engine.booking._model import Appointment
    from engine.config import Settings
    from engine.notifications import Kind, Outbox
    from engine.principal import Role
    from engine.store import Op

_MINUTE_MS = 60_000


class BookingNotices:
    """Outbox ops for booking changes; no ops at all when booking runs without an outbox."""

    def __init__(self, settings: Settings, outbox: Outbox | None, meetings: MeetingProvider):
        self.outbox = outbox
        self.meetings = meetings
        self.reminder_ms = [m * _MINUTE_MS for m in settings.reminder_minutes]

    def meeting_url(self, appt: Appointment, role: Role) -> str | None:
        if appt.meeting is None:
            return None
        return self.meetings.join_url(
            appt.meeting.room,
            user_id=appt.doctor_id if role == "doctor" else appt.patient_id,
            role=role,
            starts_at=appt.meeting.starts_at,
            ends_at=appt.meeting.ends_at,
        )

    @staticmethod
    def context(appt: Appointment, role: Role, **extra: Any) -> dict[str, Any]:
        end = appt.meeting.ends_at if appt.meeting is not None else appt.end
        context: dict[str, Any] = {
            "appointment_id": appt.id,
            "doctor_id": appt.doctor_id,
            "patient_id": appt.patient_id,
            "role": role,
            "start_ms": appt.start,
            "end_ms": end,
            "deadline_ms": appt.deadline,
            "sequence": appt.sequence,
        }
        context.update({k: v for k, v in extra.items() if v is not None})
        return context

    def _ops(
        self,
        kind: Kind,
        appt: Appointment,
        roles: tuple[Role, ...],
        at: int,
        *,
        key: str | None = None,
        due_at: int | None = None,
        link: bool = False,
        **extra: Any,
    ) -> list[Op]:
        if self.outbox is None:
            return []
        ops: list[Op] = []
        for role in roles:
            url = self.meeting_url(appt, role) if link else None
            context = self.context(appt, role, meeting_url=url, **extra)
            recipient = appt.doctor_id if role == "doctor" else appt.patient_id
            ops += self.outbox.put_ops(
                kind, recipient, context, key=key or appt.id, at=at, due_at=due_at
            )
        return ops

    def requested(self, appt: Appointment) -> list[Op]:
        return self._ops("appointment.requested", appt, ("doctor", "patient"), appt.requested_at)

    def confirmed(self, appt: Appointment, now: int) -> list[Op]:
        both: tuple[Role, ...] = ("patient", "doctor")
        return self._ops("appointment.confirmed", appt, both, now, link=True) + self._reminders(
            appt, now
        )

    def _reminders(self, appt: Appointment, now: int) -> list[Op]:
        """The reminders of a confirmed appointment whose time has not passed."""
        both: tuple[Role, ...] = ("patient", "doctor")
        ops: list[Op] = []
        for lead in self.reminder_ms:
            due = appt.start - lead
            if due > now:
                key = f"{appt.id}:{appt.start}:{lead}"
                ops += self._ops(
                    "appointment.reminder", appt, both, now, key=key, due_at=due, link=True
                )
        return ops

    def rescheduled(self, moved: Appointment, before: Appointment, now: int) -> list[Op]:
        """Ops for a move applied (``before`` is the appointment as it was): both sides are
        told, keyed by the move (a resend is recognisable, a later move is a new message);
        a confirmed appointment's pending reminders are withdrawn and queued anew at the new
        time."""
        confirmed = moved.status == "confirmed"
        ops = self._ops(
            "appointment.rescheduled", moved, ("patient", "doctor"), now,
            key=f"{moved.id}:{moved.sequence}", link=confirmed,
        )  # fmt: skip
        if confirmed:
            ops += self._withdraw_reminders(before, now) + self._reminders(moved, now)
        return ops

    def closed(self, appt: Appointment, now: int) -> list[Op]:
        """Ops for a request refused or expired, or an appointment cancelled."""
        if appt.status == "refused":
            return self._ops(
                "appointment.refused", appt, ("patient",), now, reason=appt.refusal_reason
            )
        if appt.status == "expired":
            return self._ops("appointment.expired", appt, ("patient",), now)
        if appt.status != "cancelled" or appt.cancellation is None:
            return []
        by = appt.cancellation.by
        others: dict[str, tuple[Role, ...]] = {"patient": ("doctor",), "doctor": ("patient",)}
        cancelled = self._ops(
            "appointment.cancelled", appt, others.get(by, ("patient", "doctor")), now,
            by=by, justification=appt.cancellation.justification,
        )  # fmt: skip
        return cancelled + self._withdraw_reminders(appt, now)

    def _withdraw_reminders(self, appt: Appointment, now: int) -> list[Op]:
        """Delete the reminders a confirmation queued that are not due yet (so never sent):
        a cancelled appointment sends none, and its recipients' lists do not show them. One
        already due is left to the send-time guard."""
        if self.outbox is None or appt.meeting is None or appt.decided_at is None:
            return []
        ops: list[Op] = []
        for lead in self.reminder_ms:
            due = appt.start - lead
            if due > now and due > appt.decided_at:
                key = f"{appt.id}:{appt.start}:{lead}"
                for recipient in (appt.patient_id, appt.doctor_id):
                    ops += self.outbox.withdraw_ops(
                        "appointment.reminder", recipient, key=key, at=appt.decided_at
                    )
        return ops

    def wake(self) -> None:
        if self.outbox is not None:
            self.outbox.wake()

    def calendar_event(self, appt: Appointment, role: Role) -> CalendarEvent:
        """The appointment as ``role``'s calendar feed shows it (their own link)."""
        end = appt.meeting.ends_at if appt.meeting is not None else appt.end
        confirmed = appt.status == "confirmed"
        return CalendarEvent(
            appointment_id=appt.id,
            start=appt.start,
            end=end,
            status="CONFIRMED" if confirmed else "TENTATIVE",
            sequence=appt.sequence,
            summary="Teleconsulta Health&Med",
            changed_at=appt.decided_at or appt.requested_at,
            meeting_url=self.meeting_url(appt, role) if confirmed else None,
        )
