"""Mail settings and messages: URLs checked at start, Portuguese text and escaped HTML,
invitations parsed back with icalendar."""

from __future__ import annotations

from pathlib import Path

import icalendar
import pytest

from engine.config import Settings, SettingsError, load_settings
from engine.notifications import Contact, Messages, OutboxItem, parse_mail_url


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        pytest.param("smtp://mail.example.test", "smtp", "mail.example.test", 25, id="smtp"),
        pytest.param("smtp://u:p%40ss@127.0.0.1:2525", "smtp", "127.0.0.1", 2525, id="auth"),
        pytest.param("smtps://mail.example.test", "smtps", "mail.example.test", 465, id="smtps"),
        pytest.param("ses://sa-east-1", "ses", "sa-east-1", 0, id="ses"),
        pytest.param("file:///tmp/mail", "file", "", 0, id="file"),
    ],
)
def test_mail_urls_parse(url: str, scheme: str, host: str, port: int) -> None:
    """Every documented HEALTHMED_MAIL_URL form parses to its transport's target."""
    target = parse_mail_url(url)
    assert (target.scheme, target.host, target.port) == (scheme, host, port)
    assert "p@ss" not in repr(target)


@pytest.mark.parametrize(
    "url",
    ["mail.example.test", "http://x", "smtp://", "smtp://h:99999", "smtp://h/path",
     "ses://", "ses://nowhere", "file://"],
)  # fmt: skip
def test_a_bad_mail_url_stops_the_start(url: str, tmp_path: Path) -> None:
    """A bad HEALTHMED_MAIL_URL is a SettingsError naming the variable."""
    with pytest.raises(SettingsError, match="HEALTHMED_MAIL_URL"):
        load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_MAIL_URL": url})


def test_mail_defaults_and_reminders(tmp_path: Path) -> None:
    """The default transport is file://<data dir>/mail; reminder minutes parse, and bad ones
    or a bad sender stop the start."""
    settings = load_settings({"HEALTHMED_DATA_DIR": str(tmp_path)})
    assert settings.mail_url == f"file://{tmp_path.resolve() / 'mail'}"
    assert settings.reminder_minutes == (1440, 60)
    assert settings.mail_max_attempts == 8
    custom = load_settings(
        {"HEALTHMED_DATA_DIR": str(tmp_path), "HEALTHMED_REMINDER_MINUTES": "1,3"}
    )
    assert custom.reminder_minutes == (3, 1)
    for name, value in [
        ("HEALTHMED_REMINDER_MINUTES", "soon"),
        ("HEALTHMED_REMINDER_MINUTES", "0"),
        ("HEALTHMED_MAIL_FROM", "nobody"),
        ("HEALTHMED_MAIL_MAX_ATTEMPTS", "0"),
        ("HEALTHMED_MAIL_TIMEZONE", "Mars/Olympus"),
    ]:
        with pytest.raises(SettingsError, match=name):
            load_settings({"HEALTHMED_DATA_DIR": str(tmp_path), name: value})


START = 1_796_130_000_000  # 2026-12-01T13:00:00Z, 10:00 in Brasília


def item(kind: str, **context: object) -> OutboxItem:
    base: dict[str, object] = {
        "appointment_id": "01APPT",
        "doctor_id": "D1",
        "patient_id": "P1",
        "role": "patient",
        "start_ms": START,
        "end_ms": START + 50 * 60_000,
        "deadline_ms": START - 15 * 60_000,
        "sequence": 0,
    }
    base.update(context)
    messages = Messages(Settings())
    return OutboxItem(
        id="abc123", kind=kind, recipient_id="P1",  # type: ignore[arg-type]
        subject=messages.subject(kind, base), created_at=START - 86_400_000,
        due_at=START - 86_400_000, context=base,
    )  # fmt: skip


NAMES = {"doctor": Contact("Dra. <b>Ana</b>", "ana@example.test"),
         "patient": Contact("Maria", "maria@example.test")}  # fmt: skip


def test_a_confirmation_is_portuguese_text_html_and_an_invitation() -> None:
    """A confirmation has a Portuguese subject with the local time, a text and an escaped
    HTML part, and a METHOD:REQUEST invitation with UID, SEQUENCE and UTC times."""
    messages = Messages(Settings())
    confirmed = item("appointment.confirmed", meeting_url="https://meet.test/r?jwt=t")
    assert confirmed.subject == "Consulta confirmada: 01/12/2026 10:00"
    message = messages.build(confirmed, NAMES["patient"], NAMES)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "terça-feira, 01/12/2026, às 10:00 (horário de Brasília)" in text
    assert "https://meet.test/r?jwt=t" in text
    assert "Dra. &lt;b&gt;Ana&lt;/b&gt;" in html
    assert "<b>Ana" not in html
    assert message["Message-ID"] == "<abc123@healthmed>"
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    [event] = icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")
    assert str(event["UID"]) == "01APPT@healthmed"
    assert event.decoded("DTSTART").isoformat() == "2026-12-01T13:00:00+00:00"
    assert str(event["ATTENDEE"]) == "mailto:maria@example.test"


def test_a_cancellation_carries_cancel_and_a_reset_carries_its_code_line() -> None:
    """A cancellation is METHOD:CANCEL with its sequence; the reset text has `Code: <token>`;
    kinds without invitation have no calendar part."""
    messages = Messages(Settings())
    cancelled = messages.build(
        item("appointment.cancelled", sequence=1, by="doctor", justification="Imprevisto sério"),
        NAMES["patient"], NAMES,
    )  # fmt: skip
    part = next(p for p in cancelled.walk() if p.get_content_type() == "text/calendar")
    cal = icalendar.Calendar.from_ical(part.get_content())
    assert cal["METHOD"] == "CANCEL"
    assert int(cal.walk("VEVENT")[0]["SEQUENCE"]) == 1
    assert "cancelada pelo médico" in cancelled.get_body(("plain",)).get_content()
    reset = OutboxItem(
        id="r1", kind="password.reset", recipient_id="P1", subject="Redefinição de senha",
        created_at=START, due_at=START, context={"code": "tok-123", "valid_minutes": 30},
    )  # fmt: skip
    built = messages.build(reset, NAMES["patient"], {})
    assert "\nCode: tok-123\n" in built.get_body(("plain",)).get_content()
    assert all(p.get_content_type() != "text/calendar" for p in built.walk())


def test_the_cheaper_policy_writes_what_the_default_policy_reads_back() -> None:
    """Built with the notifications' policy, a message with non-ASCII names and a long
    subject parses back with the standard library's default policy to the same headers and
    parts; the boundary is in none of the parts; a header value with a line break is still
    refused (no header injection)."""
    import email
    import email.policy

    messages = Messages(Settings())
    to = Contact("José da Silva Çà", "jose@example.test")
    cancelled = item(
        "appointment.cancelled", sequence=1, by="doctor", justification="Imprevisto -- =_hm_ " * 9
    )
    built = messages.build(cancelled, to, NAMES)
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    for name in ("Subject", "From", "To", "Date", "Message-ID", "X-Healthmed-Kind"):
        assert str(parsed[name]) == str(built[name])
    assert str(parsed["To"]) == "José da Silva Çà <jose@example.test>"
    boundary = built.get_boundary()
    assert boundary is not None
    texts = [p.get_content() for p in parsed.walk() if not p.is_multipart()]
    assert len(texts) == 3
    assert texts[0] == built.get_body(("plain",)).get_content()
    assert all(boundary not in text for text in texts)
    with pytest.raises(ValueError, match="linefeed"):
        built["X-Extra"] = "a\r\nBcc: someone@example.test"


def test_a_boundary_found_in_a_part_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MIME boundary is random; one that a part happens to contain is replaced."""
    from engine.notifications import _mime

    draws = iter(["aa", "bb"])
    monkeypatch.setattr(_mime.secrets, "token_hex", lambda _n: next(draws))
    assert _mime.boundary(["text with =_hm_aa inside", "html"]) == "=_hm_bb"


def test_a_header_given_as_an_object_is_kept_as_the_default_policy_keeps_it() -> None:
    """An address object (not text) set on a message goes through the standard registry."""
    from email.headerregistry import Address

    messages = Messages(Settings())
    built = messages.build(item("appointment.requested"), NAMES["patient"], NAMES)
    built["Reply-To"] = Address("Ana Souza", "ana", "example.test")
    assert str(built["Reply-To"]) == "Ana Souza <ana@example.test>"
    assert b"Reply-To: Ana Souza <ana@example.test>" in built.as_bytes()
