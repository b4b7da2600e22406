"""A large fleet written straight into the server's tables (no API), and a rollout or experiment over it.

PostgreSQL builds a million device rows with one ``generate_series`` INSERT in seconds;
the rollout job's tests and ``benchmarks/rollout.py`` use it to measure a pass at fleet
scale. Everything here is plain SQL on the real schema.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from edgeship.release.manifest import Requirements
from edgeship.rollout import Rollout, RolloutPolicy, RolloutState, Selector, Stage
from edgeship.rollout.codec import rollout_to_dict
from edgeship.server.db import Database
from edgeship.server.models import Device, RolloutRecord

OLD, NEW = "a" * 64, "b" * 64
OLD_REF, NEW_REF = "detector@1.0.0", "detector@2.0.0"
EXP_A, EXP_A_REF = "c" * 64, "detector@3.0.0"  # an experiment's A arm; its B arm is OLD


def seed_devices(session: Session, n: int, seen: datetime) -> None:
    """``n`` devices (``dev-0000000``…) running OLD, last seen at ``seen``, half of them with a health report."""
    current = json.dumps({"name": "detector", "version": "1.0.0", "release_id": OLD})
    session.execute(
        text(
            "INSERT INTO devices (id, secret_hash, tags, facts, state, current, enrolled_at, last_seen_at) "
            "SELECT 'dev-' || lpad(i::text, 7, '0'), repeat('0', 64), "
            "CAST('{\"ring\": \"main\", \"site\": \"s' || (i % 7) || '\"}' AS json), "
            "CAST('{\"ram\": 8589934592, \"arch\": \"' || (CASE WHEN i % 3 = 0 THEN 'x86_64' ELSE 'arm64' END) || '\"}' AS json), "
            "'committed', CAST(:current AS json), :seen, :seen FROM generate_series(0, :n - 1) AS i"
        ),
        {"current": current, "seen": seen, "n": n},
    )
    session.execute(
        text(
            "INSERT INTO device_reports (device_id, state, target_release_id, health_release_id, health, folded_at) "
            "SELECT 'dev-' || lpad(i::text, 7, '0'), 'committed', :old, :old, "
            "CAST('{\"error_rate\": 0.01, \"latency_p95_ms\": ' || (100 + i % 50) || '}' AS json), :seen "
            "FROM generate_series(0, :n - 1, 2) AS i"
        ),
        {"old": OLD, "seen": seen, "n": n},
    )


def start_rollout(
    session: Session, now: float, stages: tuple[float, ...] = (1.0, 10.0, 100.0), requirements: Requirements | None = None,
    rollout_id: str = "ro-bulk", release: tuple[str, str] = (NEW, NEW_REF), target: str = "*",
) -> RolloutRecord:
    """A live rollout of ``release`` (ID, ref; no pilot group) stored as the server stores one (no rows yet)."""
    policy = RolloutPolicy(pilot=None, stages=tuple(Stage(p, 600.0, 0.05) for p in stages))
    rollout = Rollout(rollout_id, release[0], previous_release=OLD, release_ref=release[1], policy=policy,
                      requirements=requirements or Requirements(), target=Selector.parse(target),
                      state=RolloutState(since=now, ordered_since=now))
    at = datetime.fromtimestamp(now, timezone.utc)
    record = RolloutRecord(
        id=rollout.id, kind="rollout", release_ref=release[1], release_id=release[0], previous_ref=OLD_REF, previous_release_id=OLD,
        target=target, status="rolling", live=True, document=rollout_to_dict(rollout), summary={}, created_at=at, updated_at=at,
    )
    session.add(record)
    session.flush()
    return record


def start_experiment(session: Session, now: float, experiment_id: str = "ab-bulk", target: str = "site=s0", duration: float = 86400.0) -> RolloutRecord:
    """A live A/B experiment, EXP_A against OLD on half each of ``target``, stored as the server stores one (no rows yet)."""
    at = datetime.fromtimestamp(now, timezone.utc)
    record = RolloutRecord(
        id=experiment_id, kind="experiment", release_ref=EXP_A_REF, release_id=EXP_A, previous_ref=OLD_REF, previous_release_id=OLD,
        target=target, status="running", live=True, document={"split": 0.5, "started": now, "duration": duration}, summary={},
        created_at=at, updated_at=at,
    )
    session.add(record)
    session.flush()
    return record


def check_in(session: Session, ids: list[str], release: str, state: str = "committed") -> None:
    """Devices ``ids`` check in now, running ``release`` (OLD or NEW)."""
    version = "1.0.0" if release == OLD else "2.0.0"
    session.execute(
        text("UPDATE devices SET current = CAST(:current AS json), state = :state, last_seen_at = :now WHERE id = ANY(:ids)"),
        {"current": json.dumps({"name": "detector", "version": version, "release_id": release}), "state": state,
         "now": datetime.now(timezone.utc), "ids": ids},
    )


def enroll(session: Session, ids: list[str], site: str) -> None:
    """New devices ``ids`` at ``site`` enroll now (not heard from yet)."""
    now = datetime.now(timezone.utc)
    session.add_all(
        Device(id=i, secret_hash="0" * 64, tags={"ring": "main", "site": site}, facts={"ram": 8 << 30, "arch": "arm64"},
               state="committed", current=None, enrolled_at=now)
        for i in ids
    )


def job_context(db: Database) -> Any:
    """What ``rollout_job.tick`` reads of a server: its database, and a repository with no releases to name."""
    return SimpleNamespace(db=db, repo=SimpleNamespace(ready=False))


def an_hour_ago() -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=1)
