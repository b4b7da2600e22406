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
