"""Database tables (SQLAlchemy 2). Changing one needs a migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zones and returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class AdminToken(Base):
    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class EnrollToken(Base):
    __tablename__ = "enroll_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]]
    uses_allowed: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Device(Base):
    __tablename__ = "devices"
    # Partial: almost every device has no decommissioned_at, and a full index on it lured the
    # planners into "IS NULL" scans of the whole fleet (SQLite, for a check-in batch's IN list
    # and every page of the device list). The change feed's ``> since`` reads use this one.
    __table_args__ = (
        Index("ix_devices_decommissioned_at", "decommissioned_at",
              sqlite_where=text("decommissioned_at IS NOT NULL"), postgresql_where=text("decommissioned_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # The broker's hash of the device's MQTT password (edgeship.broker): None for devices
    # enrolled before push existed, which keep polling.
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(160))
    tags: Mapped[dict[str, Any]]
    facts: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(32), default="idle")
    current: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enroll_token_id: Mapped[str | None] = mapped_column(ForeignKey("enroll_tokens.id"))
    # Indexed: the rollout job reads the devices changed since its last pass by these.
    enrolled_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    decommissioned_at: Mapped[datetime | None]


class Assignment(Base):
    """An operator's order: devices matching the target should run this release.

    Exactly one of ``device_id`` or (``tag_key``, ``tag_value``) is set.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_device", "device_id"),
        Index("ix_assignments_tag", "tag_key", "tag_value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_name: Mapped[str] = mapped_column(String(64))
    release_version: Mapped[str] = mapped_column(String(128))
    release_id: Mapped[str] = mapped_column(String(64))
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    tag_key: Mapped[str | None] = mapped_column(String(64))
    tag_value: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_id", "event_id", name="uq_events_device_event"),
        Index("ix_events_device_seq", "device_id", "seq"),
    )

    # BigInteger on PostgreSQL (events grow without bound); SQLite needs INTEGER for rowid aliasing.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(32))
    release: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]


class Lock(Base):
    """Named rows that serialize jobs across server instances (row lock / SQLite write lock)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    acquired_at: Mapped[datetime | None]


class RepoMetadata(Base):
    """One TUF metadata file as signed; the database copy is the truth, data dirs cache it.

    Every signing transaction stamps the files it writes with one new ``generation``; it
    always writes ``timestamp.json``, so that row's generation is the repository's.
    """

    __tablename__ = "repo_metadata"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    generation: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), index=True)
    written_at: Mapped[datetime]


class RolloutRecord(Base):
    """A staged rollout or an A/B experiment; ``document`` is the engine's own JSON form.

    ``live`` rollouts are re-evaluated by the rollout job; a finished one keeps its last
    materialized assignments (devices keep what it gave them) without costing a tick.
    """

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_live", "live", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # rollout | experiment
    release_ref: Mapped[str] = mapped_column(String(200))  # name@version (experiments: A's)
    release_id: Mapped[str] = mapped_column(String(64))
    previous_ref: Mapped[str | None] = mapped_column(String(200))  # rollouts: the rollback; experiments: B
    previous_release_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16))
    live: Mapped[bool] = mapped_column(Boolean)
    document: Mapped[dict[str, Any]]  # rollout/codec.py or the experiment's fields
    summary: Mapped[dict[str, Any]]  # the last evaluation's counts, for status without a recount
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RolloutAssignment(Base):
    """What the rollout job decided one device should run: check-in reads this one row."""

    __tablename__ = "rollout_assignments"
    __table_args__ = (Index("ix_rollout_assignments_rollout", "rollout_id"),)

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"))
    release_name: Mapped[str] = mapped_column(String(64))
    release_version: Mapped[str] = mapped_column(String(128))
    release_id: Mapped[str] = mapped_column(String(64))
    rollback: Mapped[bool] = mapped_column(Boolean)
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notice_s: Mapped[int] = mapped_column(Integer)


class DeviceReport(Base):
    """What the engine needs from a device's events: its state and the release it is about, its health.

    Folded from the event log by the rollout job (``position`` in ``job_cursors``), so the
    event and check-in paths stay as they are. State and release come from the same event:
    a check-in's state may be older than the events that follow it in the same agent round.
    """

    __tablename__ = "device_reports"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(32))
    target_release_id: Mapped[str | None] = mapped_column(String(64))
    health_release_id: Mapped[str | None] = mapped_column(String(64))
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    folded_at: Mapped[datetime | None] = mapped_column(index=True)  # last changed by a fold


class JobCursor(Base):
    """How far a background job has read an append-only table; its row is the job's lock."""

    __tablename__ = "job_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))  # kept in clear: the server signs with it
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """An outbox row: written in the transaction that changed the rollout, sent afterwards."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(String(500))


class FederatedRun(Base):
    """A federated learning run: rounds of training on a cohort against one signed base release.

    ``history`` holds one entry per closed round (participants, sizes, losses, whether it was
    used); its candidate model lives in the data dir (``federated/<id>/round-<n>.gguf``).
    """

    __tablename__ = "federated_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    release_ref: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[str] = mapped_column(String(64))
    base_digest: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(2000))
    options: Mapped[dict[str, Any]]
    cohort: Mapped[dict[str, Any]]  # {"devices": [...]}
    round: Mapped[int] = mapped_column(Integer)
    round_deadline: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # running | finished
    history: Mapped[dict[str, Any]]  # {"rounds": [...]}
    created_at: Mapped[datetime]


class FederatedUpdate(Base):
    """One device's upload for one round: accepted (its delta kept for the aggregate) or rejected."""

    __tablename__ = "federated_updates"
    __table_args__ = (UniqueConstraint("run_id", "round", "device_id", name="uq_federated_updates_round_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("federated_runs.id"))
    round: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    status: Mapped[str] = mapped_column(String(16))  # accepted | rejected
    reason: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[int] = mapped_column(Integer)
    norm: Mapped[float | None]
    metrics: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
