"""``next_switch_time`` for many devices at once: each zone's window openings listed once."""

from __future__ import annotations

import numpy as np

from edgeship.rollout import MaintenanceWindow, next_switch_time

DAY = 86400.0


class SwitchTimes:
    """When devices told at given times may switch, in their zones (see ``next_switch_time``).

    The openings of the window in each zone are listed for the span of the run; a lookup
    is then a binary search per device. Times outside the span fall back to the scalar
    function, so the answer never depends on the span.
    """

    def __init__(self, window: MaintenanceWindow | None, notice: float, zones: list[str], begin: float, end: float) -> None:
        self._window, self._notice, self._zones = window, notice, zones
        self._begin, self._end = begin, end
        self._openings: list[tuple[np.ndarray, np.ndarray]] = []
        if window is not None:
            for tz in zones:
                spans = list(window.openings(begin, end, tz))
                self._openings.append((np.array([o for o, _ in spans]), np.array([c for _, c in spans])))

    def __call__(self, notified: np.ndarray, zone: np.ndarray) -> np.ndarray:
        earliest = notified + self._notice
        window = self._window
        if window is None:
            return earliest
        out = np.empty_like(earliest)
        for z in np.unique(zone):
            mask = zone == z
            times = earliest[mask]
            opens, closes = self._openings[z]
            # The first opening that closes after the time: the time itself if it is open.
            k = np.searchsorted(closes, times, side="right")
            inside = (times >= self._begin) & (k < len(closes))
            switch = np.empty_like(times)
            switch[inside] = np.maximum(opens[k[inside]], times[inside])
            tz = self._zones[z]
            for j in np.flatnonzero(~inside):
                switch[j] = next_switch_time(float(times[j]), window, tz)
            out[mask] = switch
        return out
