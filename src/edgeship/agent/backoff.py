"""Retry pacing as pure arithmetic: jittered exponential backoff and a byte-rate budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: wait ``rand * min(cap, base * 2**attempt)``.

    Jitter spreads a fleet that lost its server at the same moment, so the server is not
    hit by every device at once when it comes back.
    """

    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds before retry number ``attempt`` (0-based); ``rand`` is uniform in [0, 1)."""
        return rand * min(self.cap_s, self.base_s * 2 ** min(attempt, 60))


class RateBudget:
    """How long to pause so that bytes moved so far stay under ``rate`` bytes per second.

    A token bucket with one second of burst: short bursts are free, the long-run average
    never exceeds the cap. Feed it the clock; it never sleeps itself.
    """

    def __init__(self, rate: int, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._tokens = float(rate)
        self._last = now

    def spend(self, nbytes: int, now: float) -> float:
        """Account for ``nbytes`` sent at time ``now``; returns the seconds to pause."""
        self._tokens = min(float(self.rate), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateFloor:
    """Whether a transfer falls below ``rate`` bytes per second on average over a window.

    Windows of ``window_s`` follow each other; a window whose average is below the floor
    means the transfer is too slow (a mirror trickling bytes keeps every single read under
    the read timeout, yet would take hours). Feed it the clock; it never sleeps itself.
    """

    def __init__(self, rate: int, window_s: float, now: float) -> None:
        if rate <= 0 or window_s <= 0:
            raise ValueError("rate and window must be positive")
        self.rate = rate
        self.window_s = window_s
        self._start = now
        self._bytes = 0

    def too_slow(self, nbytes: int, now: float) -> float | None:
        """Account for ``nbytes`` arrived at ``now``; the window's average (bytes/s) if it ended below the floor."""
        self._bytes += nbytes
        elapsed = now - self._start
        if elapsed < self.window_s:
            return None
        average = self._bytes / elapsed
        self._start, self._bytes = now, 0
        return average if average < self.rate else None
