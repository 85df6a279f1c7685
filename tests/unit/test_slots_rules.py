"""Slot validation and weekly-rule expansion: limits, and daylight-saving transitions in
America/Sao_Paulo (historical DST) and America/New_York."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from engine.booking import SlotTimes, WeeklyRule, doctor_of_slot, expand_rule, explicit_slots
from engine.errors import Invalid, NotFound


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def rule(**kw: object) -> WeeklyRule:
    base: dict[str, object] = {
        "from_": "2026-12-07",
        "to": "2026-12-07",
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "start_time": "08:00",
        "end_time": "09:00",
        "timezone": "America/Sao_Paulo",
    }
    base.update(kw)
    return WeeklyRule(**base)  # type: ignore[arg-type]


def test_sao_paulo_eight_oclock_follows_the_historical_dst_offset() -> None:
    """Local 08:00 in São Paulo is 11:00Z the day before DST began (2018-11-04), 10:00Z on
    the first DST day, and 11:00Z again on the day it ended (2019-02-17)."""
    days = {
        "2018-11-03": "11:00",
        "2018-11-04": "10:00",
        "2019-02-16": "10:00",
        "2019-02-17": "11:00",
    }
    for day, utc in days.items():
        (slot,) = expand_rule(rule(from_=day, to=day))
        assert slot == (ms(f"{day}T{utc}:00"), ms(f"{day}T{utc}:00") + 50 * 60_000), day


def test_sao_paulo_midnight_skipped_by_dst_start_is_left_out() -> None:
    """On 2018-11-04 local 00:00 did not exist (clocks jumped to 01:00): no slot there."""
    slots = expand_rule(
        rule(
            from_="2018-11-04",
            to="2018-11-04",
            start_time="00:00",
            end_time="02:00",
            gap_minutes=10,
        )
    )
    assert slots == [(ms("2018-11-04T03:00:00"), ms("2018-11-04T03:50:00"))]


def test_new_york_spring_forward_and_fall_back() -> None:
    """New York 2026: 08:00 is 13:00Z before 2026-03-08 and 12:00Z after; a rule across the
    skipped 02:00 hour skips it; in the repeated 01:00 hour the first occurrence is used and
    no two slots overlap."""
    ny = {"timezone": "America/New_York"}
    (before,) = expand_rule(rule(from_="2026-03-07", to="2026-03-07", **ny))
    (after,) = expand_rule(rule(from_="2026-03-08", to="2026-03-08", **ny))
    assert before[0] == ms("2026-03-07T13:00:00")
    assert after[0] == ms("2026-03-08T12:00:00")
    spring = expand_rule(
        rule(from_="2026-03-08", to="2026-03-08", start_time="01:00", end_time="04:00", **ny)
    )
    assert [s for s, _ in spring] == [ms("2026-03-08T06:00:00"), ms("2026-03-08T07:00:00")]
    fall = expand_rule(
        rule(from_="2026-11-01", to="2026-11-01", start_time="00:00", end_time="03:00", **ny)
    )
    assert [s for s, _ in fall] == [
        ms("2026-11-01T04:00:00"),
        ms("2026-11-01T05:00:00"),
        ms("2026-11-01T07:00:00"),
    ]
    for (_, e1), (s2, _) in itertools.pairwise(fall):
        assert e1 <= s2


def test_a_slot_straddling_the_spring_gap_never_overlaps_the_next() -> None:
    """01:40 + 50 min crosses the New York gap; the next wall-clock slot would overlap it in
    real time and is skipped."""
    slots = expand_rule(
        rule(
            from_="2026-03-08",
            to="2026-03-08",
            start_time="01:40",
            end_time="05:00",
            gap_minutes=0,
            timezone="America/New_York",
        )
    )
    for (_, e1), (s2, _) in itertools.pairwise(slots):
        assert e1 <= s2
    assert all(e - s == 50 * 60_000 for s, e in slots)


def test_defaults_are_fifty_minutes_with_ten_minute_gaps() -> None:
    """08:00-12:00 makes four 50-minute slots an hour apart."""
    slots = expand_rule(rule(end_time="12:00"))
    assert len(slots) == 4
    assert [s - slots[0][0] for s, _ in slots] == [0, 3_600_000, 7_200_000, 10_800_000]


def test_weekdays_are_iso() -> None:
    """weekdays [1] keeps Mondays only (2026-12-07 is a Monday)."""
    assert len(expand_rule(rule(from_="2026-12-07", to="2026-12-13", weekdays=[1]))) == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"timezone": "Mars/Olympus"}, "invalid_timezone", id="timezone"),
        pytest.param({"weekdays": [0]}, "invalid_rule", id="weekday-0"),
        pytest.param({"weekdays": []}, "invalid_rule", id="no-weekdays"),
        pytest.param({"start_time": "9:00"}, "invalid_rule", id="time-format"),
        pytest.param({"end_time": "07:00"}, "invalid_rule", id="end-before-start"),
        pytest.param({"to": "2026-12-01"}, "invalid_rule", id="to-before-from"),
        pytest.param({"duration_minutes": 0}, "invalid_rule", id="zero-duration"),
        pytest.param({"duration_minutes": 241}, "invalid_rule", id="over-4h"),
        pytest.param({"end_time": "08:30"}, "no_slots", id="no-slot-fits"),
        pytest.param(
            {"from_": "2026-01-01", "to": "2026-12-31", "end_time": "20:00"},
            "too_many_slots",
            id="over-500",
        ),
    ],
)
def test_invalid_rules_are_422(overrides: dict[str, object], code: str) -> None:
    """Each invalid rule is 422 with its code."""
    with pytest.raises(Invalid) as info:
        expand_rule(rule(**overrides))
    assert info.value.code == code


def test_rule_starting_before_today_is_422_and_past_slots_of_today_are_dropped() -> None:
    """With now given, from < today is 422; today's elapsed slots are left out."""
    now = ms("2026-12-07T12:30:00")  # 09:30 in São Paulo
    with pytest.raises(Invalid):
        expand_rule(rule(from_="2026-12-06", to="2026-12-08"), now=now)
    slots = expand_rule(rule(from_="2026-12-07", to="2026-12-07", end_time="12:00"), now=now)
    assert [s for s, _ in slots] == [ms("2026-12-07T13:00:00"), ms("2026-12-07T14:00:00")]


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        pytest.param(
            "2030-01-01T10:00:00Z", "2030-01-01T10:00:00Z", "invalid_slot", id="zero-length"
        ),
        pytest.param("2030-01-01T10:00:00Z", "2030-01-01T09:00:00Z", "invalid_slot", id="negative"),
        pytest.param("2030-01-01T10:00:00Z", "2030-01-01T14:00:01Z", "slot_too_long", id="over-4h"),
        pytest.param("2020-01-01T10:00:00Z", "2020-01-01T11:00:00Z", "slot_in_past", id="past"),
        pytest.param("2030-01-01T10:00:00", "2030-01-01T11:00:00Z", "invalid_time", id="no-offset"),
        pytest.param("tomorrow", "2030-01-01T11:00:00Z", "invalid_time", id="garbage"),
    ],
)
def test_invalid_explicit_slots_are_422(start: str, end: str, code: str) -> None:
    """Zero or negative length, over 4 h, past, or unparsable: 422 with its code."""
    with pytest.raises(Invalid) as info:
        explicit_slots([SlotTimes(start=start, end=end)], ms("2026-12-01T00:00:00"))
    assert info.value.code == code


def test_explicit_slots_limits() -> None:
    """Exactly 4 h and 500 slots are accepted; 501 slots, none, or a start more than two
    years ahead are 422."""
    now = ms("2026-12-01T00:00:00")
    assert explicit_slots(
        [SlotTimes(start="2027-06-01T10:00:00Z", end="2027-06-01T14:00:00Z")], now
    )
    many = [SlotTimes(start="2027-06-01T10:00:00Z", end="2027-06-01T11:00:00Z")] * 500
    assert len(explicit_slots(many, now)) == 500
    for bad in ([*many, many[0]], []):
        with pytest.raises(Invalid):
            explicit_slots(bad, now)
    assert explicit_slots(
        [SlotTimes(start="2028-11-29T10:00:00Z", end="2028-11-29T11:00:00Z")], now
    )
    with pytest.raises(Invalid) as info:
        explicit_slots([SlotTimes(start="2028-12-02T10:00:00Z", end="2028-12-02T11:00:00Z")], now)
    assert info.value.code == "beyond_horizon"


def test_slot_ids_name_their_doctor() -> None:
    """A slot id leads to its doctor; a malformed one is 404."""
    assert doctor_of_slot("D1.01ARZ3NDEKTSV4RRFFQ69G5FAV") == "D1"
    for bad in (
        "nodot",
        ".01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "D" * 5000 + ".01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "D1}{x.01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "D1.short",
        "D1.01ARZ3NDEKTSV4RRFFQ69G5FA!",
    ):
        with pytest.raises(NotFound):
            doctor_of_slot(bad)


def test_skip_holidays_leaves_out_national_and_state_holidays() -> None:
    """A daily rule over 2027-07-07..10 with skip_holidays: São Paulo's 9 July (a state
    holiday) has no slot for a SP doctor, but has one for a RJ doctor; Christmas (national)
    has none for either; without the flag every day has its slot."""

    def days(slots: list[tuple[int, int]]) -> list[str]:
        return [datetime.fromtimestamp(s / 1000, tz=UTC).date().isoformat() for s, _ in slots]

    july = rule(from_="2027-07-07", to="2027-07-10", skip_holidays=True)
    assert days(expand_rule(july, uf="SP")) == ["2027-07-07", "2027-07-08", "2027-07-10"]
    assert days(expand_rule(july, uf="RJ")) == ["2027-07-07", "2027-07-08", "2027-07-09",
                                                 "2027-07-10"]  # fmt: skip
    christmas = rule(from_="2027-12-24", to="2027-12-26", skip_holidays=True)
    for uf in ("SP", "RJ", None):
        assert days(expand_rule(christmas, uf=uf)) == ["2027-12-24", "2027-12-26"]
    plain = rule(from_="2027-12-24", to="2027-12-26")
    assert days(expand_rule(plain, uf="SP")) == ["2027-12-24", "2027-12-25", "2027-12-26"]
    with pytest.raises(Invalid) as caught:
        expand_rule(rule(from_="2027-12-25", to="2027-12-25", skip_holidays=True), uf="SP")
    assert caught.value.code == "no_slots"


def test_skip_holidays_leaves_out_carnival_but_not_the_other_optional_days() -> None:
    """Carnival 2027 (Monday 8 and Tuesday 9 February, a national ponto facultativo) has no
    slot with skip_holidays, for any state; Ash Wednesday (10 February, optional too) keeps its
    slot; without the flag Carnival has its slots."""

    def days(slots: list[tuple[int, int]]) -> list[str]:
        return [datetime.fromtimestamp(s / 1000, tz=UTC).date().isoformat() for s, _ in slots]

    carnival = rule(from_="2027-02-07", to="2027-02-10", skip_holidays=True)
    for uf in ("SP", "RJ", "BA", None):
        assert days(expand_rule(carnival, uf=uf)) == ["2027-02-07", "2027-02-10"]
    plain = rule(from_="2027-02-07", to="2027-02-10")
    assert days(expand_rule(plain, uf="SP")) == ["2027-02-07", "2027-02-08", "2027-02-09",
                                                 "2027-02-10"]  # fmt: skip


def test_holidays_follow_the_rules_local_date() -> None:
    """A slot at 22:00 in São Paulo on 2027-12-24 is 01:00Z on the 25th: kept (the local day
    is not Christmas); 22:00 local on the 25th is left out."""
    late = rule(from_="2027-12-24", to="2027-12-25", start_time="22:00", end_time="23:00",
                skip_holidays=True)  # fmt: skip
    (slot,) = expand_rule(late, uf="SP")
    assert slot[0] == ms("2027-12-25T01:00:00")


def test_time_off_is_skipped_by_rules_and_explicit_slots() -> None:
    """Slots overlapping a time-off range (half-open) are left out of a rule's expansion and of
    explicit slots; one ending exactly at its start is kept."""
    day = rule(from_="2027-03-01", to="2027-03-03", start_time="10:00", end_time="11:00")
    off = [(ms("2027-03-02T00:00:00"), ms("2027-03-03T00:00:00"))]
    kept = expand_rule(day, off=off)
    assert [s for s, _ in kept] == [ms("2027-03-01T13:00:00"), ms("2027-03-03T13:00:00")]
    now = ms("2027-01-01T00:00:00")
    slots = [
        SlotTimes(start="2027-03-01T23:10:00Z", end="2027-03-02T00:00:00Z"),
        SlotTimes(start="2027-03-01T23:30:00Z", end="2027-03-02T00:20:00Z"),
    ]
    assert explicit_slots(slots, now, off) == [(ms("2027-03-01T23:10:00"),
                                                ms("2027-03-02T00:00:00"))]  # fmt: skip


def test_a_rule_without_a_timezone_takes_the_doctors() -> None:
    """No ``timezone`` in the rule: the doctor's profile zone applies; none at all is 422."""
    (slot,) = expand_rule(rule(timezone=None), default_timezone="America/Manaus")
    assert slot[0] == ms("2026-12-07T12:00:00")  # Manaus is UTC-4
    with pytest.raises(Invalid) as caught:
        expand_rule(rule(timezone=None))
    assert caught.value.code == "invalid_timezone"
