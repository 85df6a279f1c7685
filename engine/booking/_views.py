"""What a participant sees of an appointment: their meeting link, the other party's name, and
the ``appointment.*`` events built from that view."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from engine.booking._model import MeetingView
from engine.errors import NotFound
from engine.realtime import events
from engine.timeutil import to_rfc3339

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._model import Appointment, AppointmentView
    from engine.principal import Role


class Views:
    """Appointment views per viewer."""

    def __init__(self, ctx: BookingContext) -> None:
        self.ctx = ctx

    def meeting_view(self, appt: Appointment, user_id: str) -> MeetingView | None:
        if appt.meeting is None or appt.status != "confirmed":
            return None
        role: Role = "doctor" if user_id == appt.doctor_id else "patient"
        url = self.ctx.meetings.join_url(
            appt.meeting.room,
            user_id=user_id,
            role=role,
            starts_at=appt.meeting.starts_at,
            ends_at=appt.meeting.ends_at,
        )
        return MeetingView(
            url=url,
            starts_at=to_rfc3339(appt.meeting.starts_at),
            ends_at=to_rfc3339(appt.meeting.ends_at),
        )

    def view_for(self, appt: Appointment, user_id: str) -> AppointmentView:
        view = appt.view()
        meeting = self.meeting_view(appt, user_id)
        return msgspec.structs.replace(view, meeting=meeting) if meeting else view

    async def named(self, view: AppointmentView, appt: Appointment, viewer: str) -> AppointmentView:
        """``view`` with the other party's name: the doctor's view names the patient (the name
        only, never the CPF), the patient's names the doctor and the specialty. A party whose
        account is gone stays unnamed."""
        if viewer == appt.doctor_id:
            name = await self.ctx.accounts.patient_name(appt.patient_id)
            return msgspec.structs.replace(view, patient_name=name) if name else view
        try:
            doctor = await self.ctx.accounts.get_doctor(appt.doctor_id)
        except NotFound:
            return view
        return msgspec.structs.replace(
            view, doctor_name=str(doctor.name), doctor_specialty=str(doctor.specialty)
        )

    async def view_named(self, appt: Appointment, user_id: str) -> AppointmentView:
        """What ``user_id`` sees: its meeting link and the other party's name."""
        return await self.named(self.view_for(appt, user_id), appt, user_id)

    async def frames(
        self, appt: Appointment, event: str, *, patient: bool, doctor: bool
    ) -> list[tuple[str, bytes]]:
        """``event`` for the appointment's patient and/or doctor, each with their own view."""
        pairs: list[tuple[str, bytes]] = []
        if patient:
            topic = events.patient_appointments_topic(appt.patient_id)
            pairs += events.frames([topic], event, await self.view_named(appt, appt.patient_id))
        if doctor:
            topic = events.doctor_appointments_topic(appt.doctor_id)
            pairs += events.frames([topic], event, await self.view_named(appt, appt.doctor_id))
        return pairs
