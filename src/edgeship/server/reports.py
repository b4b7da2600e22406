"""The fleet as the rollout engine sees it: devices, their check-ins and their folded events.

Check-in records what a device runs; its state together with the release that state is
about (what it installs, or gave up on), and its inference health, arrive as events. The rollout
job folds new events into one ``device_reports`` row per device, so neither the event
path nor the check-in path does extra work for the engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Row, Select, select, union
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
    folded_at = datetime.now(timezone.utc)  # the change feed's mark (``changed_views``)
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
            changes["health"] = {k: row.data[k] for k in _HEALTH_FIELDS if _finite(row.data.get(k))}
    if latest:
        known = {r.device_id: r for r in session.scalars(select(DeviceReport).where(DeviceReport.device_id.in_(latest)))}
        for device_id, changes in latest.items():
            report = known.get(device_id) or DeviceReport(device_id=device_id)
            for key, value in changes.items():
                setattr(report, key, value)
            report.folded_at = folded_at
            session.add(report)
    return len(rows)


def _is_health(data: Mapping[str, Any]) -> bool:
    return all(_finite(data.get(k)) for k in ("error_rate", "latency_p95_ms"))


def _finite(value: object) -> bool:
    # NaN or infinity would poison the pooled health every rollout compares (and JSON-on-
    # SQLite passes them through): such a report is not a health report.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _query() -> Select[Any]:
    return select(
        Device.id, Device.tags, Device.facts, Device.state, Device.current, Device.last_seen_at, Device.decommissioned_at,
        DeviceReport.state.label("reported"), DeviceReport.target_release_id, DeviceReport.health_release_id, DeviceReport.health,
    ).outerjoin(DeviceReport, DeviceReport.device_id == Device.id)


def device_views(session: Session) -> list[DeviceView]:
    """Every enrolled, not decommissioned device as the engine reads it."""
    query = _query().where(Device.decommissioned_at.is_(None)).order_by(Device.id)
    return [_view(r) for r in session.execute(query)]


def changed_views(session: Session, since: datetime) -> tuple[list[DeviceView], list[str]]:
    """Devices that checked in, enrolled, left or had events folded after ``since``.

    Returns the current view of those still in the fleet and the IDs of those decommissioned.
    Each branch of the union is one index range scan, so the work follows the changes, not
    the fleet.
    """
    ids = union(
        select(Device.id).where(Device.last_seen_at > since),
        select(Device.id).where(Device.enrolled_at > since),
        select(Device.id).where(Device.decommissioned_at > since),
        select(DeviceReport.device_id).where(DeviceReport.folded_at > since),
    )
    views, gone = [], []
    for r in session.execute(_query().where(Device.id.in_(ids)).order_by(Device.id)):
        if r.decommissioned_at is None:
            views.append(_view(r))
        else:
            gone.append(r.id)
    return views, gone


def _view(r: Row[Any]) -> DeviceView:
    current = (r.current or {}).get("release_id")
    facts = r.facts or {}
    health = HealthMetrics(**r.health) if r.health and current and r.health_release_id == current else None
    return DeviceView(
        id=r.id,
        tags={k: str(v) for k, v in (r.tags or {}).items()},
        facts=DeviceFacts(facts.get("ram"), facts.get("arch"), facts.get("accelerator"), facts.get("timezone") or "UTC"),
        current=current,
        state=DeviceState(r.reported or r.state),
        target=r.target_release_id,
        health=health,
        seen=r.last_seen_at.timestamp() if r.last_seen_at else None,
    )
