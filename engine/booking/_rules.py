"""Slot validation and weekly-rule expansion (pure functions, no I/O).

Rule expansion is daylight-saving safe: each slot's local start (``zoneinfo``) is converted to
UTC on its own day, so 08:00 in ``America/Sao_Paulo`` is 10:00Z or 11:00Z as the offset of that
day says. Around a transition:

* a local start that does not exist (clocks jump forward over it) is skipped;
* a local start that exists twice (clocks fall back) takes its first occurrence;
* a slot lasts exactly ``duration_minutes`` of real time; one that would overlap the previous
  slot because the clocks jumped forward inside it is skipped.

Days off: with ``skip_holidays`` a rule makes no slot on Brazil's national public holidays nor
on those of the doctor's state (``uf``), by the rule's local date (the ``holidays`` package,
category "public"), nor on Carnival's Monday and Tuesday: legally a *ponto facultativo*
(category "optional"), but the days Brazil stops, clinics included. The other optional days
(Ash Wednesday's morning, Corpus Christi, Christmas and New Year's Eves, Public Servant's Day)
keep their slots; a doctor takes them with time off. Any slot, explicit or by rule,
overlapping one of the doctor's time-off ranges is left out (``off``).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from engine.errors import Checks, Invalid
from engine.timeutil import parse_rfc3339
from engine.timeutil import zone as _zone

if TYPE_CHECKING:
    from collections.abc import Sequence
    from zoneinfo import ZoneInfo

    from engine.booking._model import SlotTimes, WeeklyRule

MAX_SLOTS_PER_CALL = 500
MAX_SLOT_MS = 4 * 3600 * 1000
MIN_SLOT_MS = 5 * 60 * 1000
"""A slot lasts 5 minutes at least: a real consultation, and a bound on how many slots fit a
day (a flood of 1 ms slots made overlap checks and agendas costly)."""
MAX_RULE_DAYS = 366
MAX_GAP_MINUTES = 1440
HORIZON_DAYS = 730
"""How far ahead a slot may start: two years (a real agenda; also keeps dates computable)."""
HORIZON_MS = HORIZON_DAYS * 86_400_000
MINUTE_MS = 60_000

Interval = tuple[int, int]


def check_interval(start: int, end: int, now: int, *, index: int | None = None) -> None:
    """``Invalid`` for a slot that is zero or negative length, under 5 min, over 4 h, or starts in
    the past."""
    where = f"slot {index}: " if index is not None else ""
    if end <= start:
        raise Invalid(f"{where}end must be after start", code="invalid_slot", index=index)
    if end - start < MIN_SLOT_MS:
        raise Invalid(f"{where}a slot lasts at least 5 minutes", code="slot_too_short", index=index)
    if end - start > MAX_SLOT_MS:
        raise Invalid(f"{where}a slot lasts at most 4 hours", code="slot_too_long", index=index)
    if start <= now:
        raise Invalid(f"{where}the slot starts in the past", code="slot_in_past", index=index)
    if start > now + HORIZON_MS:
        raise Invalid(
            f"{where}a slot starts at most {HORIZON_DAYS} days ahead",
            code="beyond_horizon",
            index=index,
        )


def outside(intervals: list[Interval], off: Sequence[Interval]) -> list[Interval]:
    """``intervals`` less those overlapping any range of ``off`` (time off: half-open)."""
    if not off:
        return intervals
    return [(s, e) for s, e in intervals if not any(a < e and s < b for a, b in off)]


@functools.lru_cache(maxsize=512)
def _holidays_of(uf: str | None, year: int) -> frozenset[date]:
    # Imported on first use: the package takes about a second of CPU to import, a cost only
    # rules with skip_holidays should pay, never every server start.
    import holidays

    subdiv = uf if uf in holidays.country_holidays("BR").subdivisions else None
    public = holidays.country_holidays("BR", subdiv=subdiv, years=year)
    # Names in a pinned language, so the choice does not move with the package's default.
    optional = holidays.country_holidays(
        "BR", subdiv=subdiv, years=year, categories=holidays.OPTIONAL, language="en_US"
    )
    carnival = optional.get_named("Carnival", lookup="exact")
    return frozenset([*public, *carnival])


def holidays_between(uf: str | None, first: date, last: date) -> frozenset[date]:
    """Brazil's national public holidays and those of the state ``uf`` (None: national only)
    from ``first`` to ``last`` (inclusive)."""
    out: set[date] = set()
    for year in range(first.year, last.year + 1):
        out |= _holidays_of(uf, year)
    return frozenset(d for d in out if first <= d <= last)


def explicit_slots(
    slots: list[SlotTimes], now: int, off: Sequence[Interval] = ()
) -> list[Interval]:
    """Validate explicit slots (1..500, each valid); all or nothing. Those overlapping time
    off (``off``) are then left out (possibly all of them)."""
    if not slots:
        raise Invalid("give at least one slot", code="no_slots")
    if len(slots) > MAX_SLOTS_PER_CALL:
        raise Invalid(
            f"at most {MAX_SLOTS_PER_CALL} slots per call", code="too_many_slots", count=len(slots)
        )
    checks = Checks()
    out = [
        checks.run(f"slots[{i}]", functools.partial(interval, s.start, s.end, now, index=i))
        for i, s in enumerate(slots)
    ]
    checks.done()
    return outside([i for i in out if i is not None], off)


def interval(start_s: str, end_s: str, now: int, *, index: int | None = None) -> Interval:
    """A slot's RFC 3339 ``start`` and ``end`` parsed and checked (``check_interval``), every
    invalid one of the two reported."""
    prefix = "" if index is None else f"slots[{index}]."
    checks = Checks()
    start = checks.run(
        prefix + "start", functools.partial(parse_rfc3339, start_s, field=prefix + "start")
    )
    end = checks.run(prefix + "end", functools.partial(parse_rfc3339, end_s, field=prefix + "end"))
    checks.done()
    assert start is not None
    assert end is not None
    check_interval(start, end, now, index=index)
    return start, end


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _date(value: str, field: str) -> date:
    """``YYYY-MM-DD`` exactly (``date.fromisoformat`` alone also takes ``20261201``)."""
    try:
        if _DATE.fullmatch(value) is None:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field} must be a date (YYYY-MM-DD)", code="invalid_rule") from None


def _clock(value: str, field: str) -> time:
    """``HH:MM`` exactly, 00:00 to 23:59."""
    match = _CLOCK.fullmatch(value)
    if match is None:
        raise Invalid(f"{field} must be HH:MM", code="invalid_rule")
    return time(int(match[1]), int(match[2]))


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """False for a wall time skipped by a forward transition."""
    back = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == local.replace(tzinfo=None)


def expand_rule(
    rule: WeeklyRule,
    *,
    now: int | None = None,
    uf: str | None = None,
    off: Sequence[Interval] = (),
    default_timezone: str | None = None,
) -> list[Interval]:
    """The UTC intervals (ms) of a weekly rule, validated.

    With ``now`` given, a rule starting before today (in its timezone) is ``Invalid`` and slots of
    today that already started are left out; more than 500 slots is 422. ``uf``: the doctor's
    state, whose holidays ``skip_holidays`` skips besides the national ones; ``off``: the
    doctor's time-off ranges, skipped; ``default_timezone``: the zone of a rule that names
    none (the doctor's own). A rule left with no slot is ``Invalid`` ``no_slots``.
    """
    checks = Checks()
    zone_name = rule.timezone or default_timezone or ""
    zone = checks.run("rule.timezone", lambda: _zone(zone_name, field="rule.timezone"))
    first = checks.run("rule.from", lambda: _date(rule.from_, "from"))
    last = checks.run("rule.to", lambda: _date(rule.to, "to"))
    if first is not None and last is not None:
        if last < first:
            checks.fail("rule.to", Invalid("to must not be before from", code="invalid_rule"))
        elif (last - first).days >= MAX_RULE_DAYS:
            checks.fail(
                "rule.to",
                Invalid(f"a rule spans at most {MAX_RULE_DAYS} days", code="invalid_rule"),
            )
    if not rule.weekdays or any(isinstance(d, bool) or not 1 <= d <= 7 for d in rule.weekdays):
        checks.fail(
            "rule.weekdays",
            Invalid("weekdays are ISO numbers 1 (Monday) to 7", code="invalid_rule"),
        )
    begin = checks.run("rule.start_time", lambda: _clock(rule.start_time, "start_time"))
    finish = checks.run("rule.end_time", lambda: _clock(rule.end_time, "end_time"))
    if begin is not None and finish is not None and finish <= begin:
        checks.fail(
            "rule.end_time", Invalid("end_time must be after start_time", code="invalid_rule")
        )
    if not MIN_SLOT_MS // MINUTE_MS <= rule.duration_minutes <= MAX_SLOT_MS // MINUTE_MS:
        checks.fail(
            "rule.duration_minutes",
            Invalid("duration_minutes must be 5 to 240", code="invalid_rule"),
        )
    if not 0 <= rule.gap_minutes <= MAX_GAP_MINUTES:
        checks.fail(
            "rule.gap_minutes",
            Invalid(f"gap_minutes must be 0 to {MAX_GAP_MINUTES}", code="invalid_rule"),
        )
    checks.done()  # past it, every value above was parsed
    assert zone is not None
    assert first is not None
    assert last is not None
    assert begin is not None
    assert finish is not None
    if now is not None:
        today = datetime.fromtimestamp(now / 1000, tz=zone).date()
        if first < today:
            raise Invalid("the rule starts in the past", code="slot_in_past")
        if (last - today).days > HORIZON_DAYS:
            raise Invalid(
                f"a rule reaches at most {HORIZON_DAYS} days ahead", code="beyond_horizon"
            )
    elif last.year > 9000:  # no clock given (tests): still keep the date arithmetic in range
        raise Invalid("the rule is too far ahead", code="beyond_horizon")
    weekdays = set(rule.weekdays)
    days_off = holidays_between(uf, first, last) if rule.skip_holidays else frozenset()
    duration = timedelta(minutes=rule.duration_minutes)
    step = duration + timedelta(minutes=rule.gap_minutes)
    out: list[Interval] = []
    day = first
    while day <= last:
        if day.isoweekday() in weekdays and day not in days_off:
            wall = datetime.combine(day, begin)
            end_wall = datetime.combine(day, finish)
            while wall + duration <= end_wall:
                local = wall.replace(tzinfo=zone, fold=0)
                if _exists(local, zone):
                    start = int(local.astimezone(UTC).timestamp() * 1000)
                    end = start + rule.duration_minutes * MINUTE_MS
                    fresh = (not out or start >= out[-1][1]) and (now is None or start > now)
                    if fresh and outside([(start, end)], off):
                        out.append((start, end))
                        if len(out) > MAX_SLOTS_PER_CALL:
                            raise Invalid(
                                f"the rule makes more than {MAX_SLOTS_PER_CALL} slots",
                                code="too_many_slots",
                            )
                wall += step
        day += timedelta(days=1)
    if not out:
        raise Invalid("the rule makes no slot", code="no_slots")
    return out
