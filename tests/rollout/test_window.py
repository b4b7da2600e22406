"""Maintenance windows in device local time, across midnight, time zones and DST changes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.errors import UsageError
from edgeship.rollout import MaintenanceWindow, next_switch_time

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def ts(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def local(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %z")


def test_same_instant_lands_in_each_devices_own_night() -> None:
    w = MaintenanceWindow.parse("02:00-04:00")
    now = datetime(2025, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    assert local(w.next_open(now, BERLIN), BERLIN) == "2025-06-11 02:00 +0200"
    assert local(w.next_open(now, NEW_YORK), NEW_YORK) == "2025-06-11 02:00 -0400"
    assert local(w.next_open(now, "Asia/Tokyo"), "Asia/Tokyo") == "2025-06-11 02:00 +0900"


def test_inside_the_window_switches_now() -> None:
    w = MaintenanceWindow.parse("02:00-04:00")
    now = ts("2025-06-11 03:10", BERLIN)
    assert w.next_open(now, BERLIN) == now
    assert w.contains(now, BERLIN)
    assert not w.contains(ts("2025-06-11 04:00", BERLIN), BERLIN)


def test_window_across_midnight() -> None:
    w = MaintenanceWindow.parse("23:00-01:00")
    assert w.crosses_midnight
    assert w.contains(ts("2025-06-11 00:30", BERLIN), BERLIN)  # opened the day before
    assert w.contains(ts("2025-06-10 23:30", BERLIN), BERLIN)
    assert local(w.next_open(ts("2025-06-11 01:00", BERLIN), BERLIN), BERLIN) == "2025-06-11 23:00 +0200"


def test_spring_forward_skips_a_window_inside_the_gap() -> None:
    # Berlin, last Sunday of March 2025: 02:00 CET jumps to 03:00 CEST.
    gap = MaintenanceWindow.parse("02:00-03:00")
    t = gap.next_open(ts("2025-03-29 12:00", BERLIN), BERLIN)
    assert local(t, BERLIN) == "2025-03-31 02:00 +0200"
    wide = MaintenanceWindow.parse("02:00-04:00")
    t = wide.next_open(ts("2025-03-29 12:00", BERLIN), BERLIN)
    assert local(t, BERLIN) == "2025-03-30 03:00 +0200"  # the part of the window that exists


def test_fall_back_window_holds_the_repeated_hour() -> None:
    # Berlin, last Sunday of October 2025: 03:00 CEST goes back to 02:00 CET.
    w = MaintenanceWindow.parse("02:00-04:00")
    opens = w.next_open(ts("2025-10-25 12:00", BERLIN), BERLIN)
    assert local(opens, BERLIN) == "2025-10-26 02:00 +0200"
    second_pass = opens + 3600  # 02:00 again, now in CET
    assert local(second_pass, BERLIN) == "2025-10-26 02:00 +0100"
    assert w.contains(second_pass, BERLIN)
    assert not w.contains(opens + 3 * 3600, BERLIN)  # 04:00 CET


def test_new_york_dst_change_keeps_local_wall_time() -> None:
    # US DST begins 2025-03-09: the window stays at 01:00 local, one hour earlier in UTC.
    w = MaintenanceWindow.parse("01:00-02:00")
    before = w.next_open(ts("2025-03-08 12:00", NEW_YORK), NEW_YORK)
    after = w.next_open(ts("2025-03-09 12:00", NEW_YORK), NEW_YORK)
    assert local(before, NEW_YORK) == "2025-03-09 01:00 -0500"
    assert local(after, NEW_YORK) == "2025-03-10 01:00 -0400"
    assert after - before == timedelta(hours=23).total_seconds()


def test_notice_pushes_the_switch_past_an_opening() -> None:
    w = MaintenanceWindow.parse("02:00-04:00")
    told = ts("2025-06-11 01:30", BERLIN)
    assert local(next_switch_time(told, w, BERLIN, notice=3600), BERLIN) == "2025-06-11 02:30 +0200"
    late = ts("2025-06-11 03:30", BERLIN)
    assert local(next_switch_time(late, w, BERLIN, notice=3600), BERLIN) == "2025-06-12 02:00 +0200"
    assert next_switch_time(told, None, BERLIN, notice=60) == told + 60


@pytest.mark.parametrize("text", ["2-4", "02:00-02:00", "25:00-01:00", "02:00"])
def test_bad_windows_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        MaintenanceWindow.parse(text)


def test_unknown_zone_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="time zone"):
        MaintenanceWindow.parse("02:00-04:00").next_open(0.0, "Mars/Olympus")



def _reference_openings(w: MaintenanceWindow, begin: float, end: float, tz_name: str) -> list[tuple[float, float]]:
    """The openings as listed before next_open stopped at the first: the oracle for both."""
    tz = ZoneInfo(tz_name)
    day = datetime.fromtimestamp(begin, tz) - timedelta(days=1)
    out: list[tuple[float, float]] = []
    while True:
        end_day = day + timedelta(days=1) if w.end < w.start else day
        opens = datetime.combine(day.date(), w.start, tzinfo=tz).timestamp()
        closes = datetime.combine(end_day.date(), w.end, tzinfo=tz).timestamp()
        if opens >= end:
            return out
        if closes > begin and closes > opens:
            out.append((opens, closes))
        day += timedelta(days=1)


# Zones with DST both ways, half-hour offsets and DST steps, and a day that was skipped (Apia, 2011-12-30).
ZONES = [BERLIN, NEW_YORK, "UTC", "Asia/Tokyo", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata",
         "Pacific/Apia", "America/St_Johns", "Europe/London"]
wall_times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))
# 2011-2026, at whole minutes (every wall-clock edge is one) or anywhere in between
instants = st.one_of(st.integers(1_293_840_000 // 60, 1_798_761_600 // 60).map(lambda m: m * 60.0),
                     st.floats(1_293_840_000, 1_798_761_600))


@settings(max_examples=1500, deadline=None)
@given(start=wall_times, end=wall_times, zone=st.sampled_from(ZONES), at=instants, days=st.floats(0, 40))
def test_openings_computed_as_taken_answer_as_the_listed_ones(start: str, end: str, zone: str, at: float,
                                                                days: float) -> None:
    if start == end:
        return
    w = MaintenanceWindow.parse(f"{start}-{end}")
    assert list(w.openings(at, at + days * 86400, zone)) == _reference_openings(w, at, at + days * 86400, zone)
    [(first, _), *_] = _reference_openings(w, at, at + 3 * 86400, zone)
    assert w.next_open(at, zone) == max(first, at)  # only the first opening computed
    assert w.contains(at, zone) == (first <= at)
