"""When the agent's loop checks in next: at the end of its poll interval, or sooner when asked.

A push notice asks for a check-in within a few seconds (a random part of the notice's spread),
a stop asks for one now. Requests only ever move the check-in earlier: a second notice while
the loop waits cannot push back the time an earlier one set. ``request`` never blocks, so
paho's network thread (which calls it) is never held up by the wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Wakeup:
    """The loop's deadline, shared between the loop's thread and the ones that request check-ins."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()  # an RLock: a SIGTERM handler may run while the loop holds it
        self._due: float | None = None  # the earliest requested time, None while nothing is requested

    @property
    def due(self) -> float | None:
        with self._cond:
            return self._due

    def request(self, within_s: float = 0.0) -> None:
        """Check in no later than ``within_s`` seconds from now."""
        with self._cond:
            at = self._clock() + max(0.0, within_s)
            if self._due is None or at < self._due:
                self._due = at
                self._cond.notify_all()

    def wait(self, timeout_s: float) -> None:
        """Return after ``timeout_s`` or at the earliest requested time, whichever is first.

        What was requested is forgotten on return, before the round it leads to: a request
        made during that round is for the next wait.
        """
        with self._cond:
            end = self._clock() + timeout_s
            while True:
                due = end if self._due is None else min(end, self._due)
                left = due - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._due = None
