"""Devices per state over a rollout's life, from the event log, and its inline-SVG chart."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgeship.server.models import Event

# The states a chart draws, in legend order; anything else (idle, assigned…) is left out.
CHART_STATES = ("downloading", "staged", "trial", "committed", "failed", "rolled_back")
_MAX_EVENTS = 50_000  # one page's worth: a chart is a sketch, not an audit


@dataclass(frozen=True)
class Series:
    state: str
    counts: list[float]  # devices per state; or any other positive series (federated losses)
    points: str  # SVG polyline points


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: float  # the y axis' maximum
    series: list[Series]


def state_counts(session: Session, release: str, since: datetime, until: datetime, samples: int = 40) -> dict[str, list[int]]:
    """At ``samples`` evenly spaced instants, how many devices were in each state about ``release``.

    Uses the server's receive time, not the device's clock: devices' clocks disagree, and a
    chart with events from the future helps no one.
    """
    rows = session.execute(
        select(Event.device_id, Event.state, Event.received_at)
        .where(Event.type == "state", Event.release == release, Event.received_at >= since, Event.state.is_not(None))
        .order_by(Event.seq)
        .limit(_MAX_EVENTS)
    ).all()
    span = max((until - since).total_seconds(), 1.0)
    latest: dict[str, str] = {}
    out: dict[str, list[int]] = {s: [] for s in CHART_STATES}
    i = 0
    for k in range(samples):
        at = since.timestamp() + span * (k + 1) / samples
        while i < len(rows) and rows[i].received_at.timestamp() <= at:
            latest[rows[i].device_id] = rows[i].state
            i += 1
        counts = Counter(latest.values())
        for s in CHART_STATES:
            out[s].append(counts.get(s, 0))
    return out


def chart(counts: dict[str, list[float]], width: int = 320, height: int = 120) -> Chart:
    top = max([1, *(max(c, default=0) for c in counts.values())])
    series = []
    for state, values in counts.items():
        if not any(values):
            continue
        step = width / max(len(values) - 1, 1)
        points = " ".join(f"{i * step:.1f},{height - v * height / top:.1f}" for i, v in enumerate(values))
        series.append(Series(state, values, points))
    return Chart(width, height, top, series)
