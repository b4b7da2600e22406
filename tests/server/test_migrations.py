"""Migrations go down and up again over a database holding rows that foreign keys tie together."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import func, select, text

from edgeship.server.db import Database, alembic_config
from edgeship.server.models import Device, Event


def test_migrations_downgrade_and_upgrade_over_linked_rows(fresh_database_url: str) -> None:
    db = Database(fresh_database_url)
    try:
        db.migrate()
        now = datetime.now(timezone.utc)
        with db.write() as session:
            session.add(Device(id="dev-migrate", secret_hash="x" * 64, tags={}, facts={}, enrolled_at=now))
            session.flush()
            session.add(Event(device_id="dev-migrate", event_id="e1", time=now, type="check", data={}, received_at=now))
        cfg = alembic_config(db.engine)
        command.downgrade(cfg, "0003")  # 0004 rebuilds `devices` in batch mode on SQLite
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM events WHERE device_id = 'dev-migrate'")) == 1
        command.downgrade(cfg, "0002")
        db.migrate()
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Event).where(Event.device_id == "dev-migrate")) == 1
        command.downgrade(cfg, "base")
        db.migrate()
        if db.engine.dialect.name == "sqlite":
            with db.engine.connect() as conn:  # the pragma is back on for the pooled connection
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()
