"""The fleet as the rollout engine sees it: devices, their check-ins and their folded events.

Check-in records what a device runs; its state together with the release that state is
about (what it installs, or gave up on), and its inference health, arrive as events. The rollout
job folds new events into one ``device_reports`` row per device, so neither the event
path nor the check-in path does extra work for the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgeship.rollout import DeviceFacts, DeviceState, DeviceView, HealthMetrics
from edgeship.server.models import Device, DeviceReport, Event, JobCursor

CURSOR = "device_reports"
FOLD_BATCH = 5000  # events per transaction, so one fold never holds the write lock long
_FOLDED = ("state", "metrics", "health")
_HEALTH_FIELDS = ("error_rate", "latency_p95_ms", "memory_mb", "output_stat")


def fold_events(session: Session, release_ids: Mapping[str, str]) -> int:
    """Fold events after the cursor into device reports; returns how many events were read.

    ``release_ids`` maps ``name@version`` to release IDs. A cursor is safe because events
    commit in sequence order (``events.ingest`` serializes inserts on PostgreSQL; SQLite has
    one writer), so no event can appear later below a position already read.
    """
    cursor = session.execute(select(JobCursor).where(JobCursor.name == CURSOR).with_for_update()).scalar_one()
    query = select(Event.seq, Event.device_id, Event.type, Event.state, Event.release, Event.data).where(Event.seq > cursor.position)
    rows = session.execute(query.order_by(Event.seq).limit(FOLD_BATCH)).all()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        cursor.position = row.seq
        if row.type not in _FOLDED:
            continue
        changes = latest.setdefault(row.device_id, {})
        release_id = release_ids.get(row.release or "")
        if row.type == "state" and row.state:
            changes["state"] = row.state
            changes["target_release_id"] = release_id
        elif _is_health(row.data):
            changes["health_release_id"] = release_id
            changes["health"] = {k: row.data[k] for k in _HEALTH_FIELDS if row.data.get(k) is not None}
    if latest:
        known = {r.device_id: r for r in session.scalars(select(DeviceReport).where(DeviceReport.device_id.in_(latest)))}
        for device_id, changes in latest.items():
            report = known.get(device_id) or DeviceReport(device_id=device_id)
            for key, value in changes.items():
                setattr(report, key, value)
            session.add(report)
    return len(rows)


def _is_health(data: Mapping[str, Any]) -> bool:
    return all(isinstance(data.get(k), int | float) for k in ("error_rate", "latency_p95_ms"))


def device_views(session: Session) -> list[DeviceView]:
    """Every enrolled, not decommissioned device as the engine reads it."""
    query = (
        select(Device.id, Device.tags, Device.facts, Device.state, Device.current, Device.last_seen_at, DeviceReport.state.label("reported"),
               DeviceReport.target_release_id, DeviceReport.health_release_id, DeviceReport.health)
        .outerjoin(DeviceReport, DeviceReport.device_id == Device.id)
        .where(Device.decommissioned_at.is_(None))
        .order_by(Device.id)
    )
    views = []
    for r in session.execute(query):
        current = (r.current or {}).get("release_id")
        facts = r.facts or {}
        health = HealthMetrics(**r.health) if r.health and current and r.health_release_id == current else None
        views.append(
            DeviceView(
                id=r.id,
                tags={k: str(v) for k, v in (r.tags or {}).items()},
                facts=DeviceFacts(facts.get("ram"), facts.get("arch"), facts.get("accelerator"), facts.get("timezone") or "UTC"),
                current=current,
                state=DeviceState(r.reported or r.state),
                target=r.target_release_id,
                health=health,
                seen=r.last_seen_at.timestamp() if r.last_seen_at else None,
            )
        )
    return views
