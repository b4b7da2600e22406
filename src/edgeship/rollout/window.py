"""Maintenance windows in a device's local time (IANA zones, DST, windows across midnight).

A window is a wall-clock interval such as ``02:00-04:00`` that repeats daily. Devices
download early and switch only inside it; the operator's notice period means the
device is told at least that long before it switches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edgeship.errors import UsageError

_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (ZoneInfo caches instances itself)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(
            f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Berlin or America/New_York"
        ) from exc


@dataclass(frozen=True)
class MaintenanceWindow:
    """Daily wall-clock interval [start, end); end before start means it crosses midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise UsageError(
                f"maintenance window {self} is empty", hint="give a start and an end that differ, e.g. 02:00-04:00"
            )

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """``"02:00-04:00"`` or ``"23:30-01:00"`` (crosses midnight)."""
        m = _WINDOW_RE.match(text)
        if not m:
            raise UsageError(f"maintenance window {text!r} not understood", hint="write HH:MM-HH:MM, e.g. 02:00-04:00")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise UsageError(f"maintenance window {text!r} has an impossible time", hint="hours 00-23, minutes 00-59")
        return cls(time(h1, m1), time(h2, m2))

    def as_dict(self) -> dict[str, str]:
        """The wire form agents read: ``{"start": "02:00", "end": "04:00"}``."""
        return {"start": f"{self.start:%H:%M}", "end": f"{self.end:%H:%M}"}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> MaintenanceWindow:
        return cls.parse(f"{data['start']}-{data['end']}")

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def _interval(self, day: datetime, tz: ZoneInfo) -> tuple[float, float]:
        """The window that opens on local date ``day``, as UTC timestamps.

        A wall-clock time that does not exist (skipped by a spring-forward) resolves to the
        instant after the gap, so a window inside the gap is empty that day; a repeated hour
        (fall-back) is part of the window both times.
        """
        end_day = day + timedelta(days=1) if self.crosses_midnight else day
        opens = datetime.combine(day.date(), self.start, tzinfo=tz).timestamp()
        closes = datetime.combine(end_day.date(), self.end, tzinfo=tz).timestamp()
        return opens, closes

    def contains(self, when: float, tz_name: str) -> bool:
        """Whether the UTC timestamp ``when`` lies inside the window in zone ``tz_name``."""
        return self.next_open(when, tz_name) == when

    def next_open(self, earliest: float, tz_name: str) -> float:
        """The first instant at or after ``earliest`` that lies inside the window."""
        # A window skipped by DST may push us to the next day: three days cover every case.
        for opens, _ in self.openings(earliest, earliest + 3 * 86400.0, tz_name):
            return max(opens, earliest)
        raise AssertionError(f"no opening of {self} within three days of {earliest} in {tz_name}")

    def openings(self, begin: float, end: float, tz_name: str) -> Iterator[tuple[float, float]]:
        """The window's intervals [opens, closes) in zone ``tz_name`` that close after ``begin``
        and open before ``end``, in order (UTC timestamps; days a DST change empties are left out).
        Computed as they are taken, so a caller that needs the first computes only that one."""
        tz = zone(tz_name)
        # A window that opened the day before may still be open (midnight crossing).
        day = datetime.fromtimestamp(begin, tz) - timedelta(days=1)
        while True:
            opens, closes = self._interval(day, tz)
            if opens >= end:
                return
            if closes > begin and closes > opens:
                yield opens, closes
            day += timedelta(days=1)


def next_switch_time(
    notified_at: float, window: MaintenanceWindow | None, tz_name: str, notice: float = 0.0
) -> float:
    """When a device told at ``notified_at`` may switch: after the notice, inside its window."""
    earliest = notified_at + notice
    return earliest if window is None else window.next_open(earliest, tz_name)
