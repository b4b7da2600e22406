"""The fleet's hot queries look devices up by primary key, whatever the fleet's size: no plan
reaches them through an index that holds (nearly) every device."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select

from edgeship.server import fleet
from edgeship.server.db import Database
from edgeship.server.models import Device

FLEET = 3000


def _plan(db: Database, statement: object, params: dict) -> str:
    """The database's plan for ``statement``, as text."""
    with db.engine.connect() as conn:
        sql = str(statement.params(params).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
        explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        rows = conn.exec_driver_sql(explain + sql).all()
    return "\n".join(str(r[-1]) for r in rows)


def test_checkin_batch_and_device_pages_use_the_primary_key(fresh_database_url: str) -> None:
    db = Database(fresh_database_url)
    try:
        db.migrate()
        now = datetime.now(timezone.utc)
        ids = [f"dev_{i:06x}" for i in range(FLEET)]
        with db.write() as session:
            session.execute(insert(Device), [
                {"id": i, "secret_hash": "0" * 64, "tags": {}, "facts": {}, "state": "idle", "enrolled_at": now} for i in ids
            ])
            session.execute(Device.__table__.update().where(Device.id == ids[0]).values(decommissioned_at=now))
        batch = _plan(db, fleet._DEVICES, {"ids": ids[100:132]})
        page = _plan(db, select(Device).where(Device.id > "dev_", Device.decommissioned_at.is_(None)).order_by(Device.id).limit(500), {})
        left = _plan(db, select(Device.id).where(Device.decommissioned_at > now), {})
    finally:
        db.dispose()
    # Before the index was partial, SQLite read every active device through it for both.
    for plan in (batch, page):
        assert "ix_devices_decommissioned_at" not in plan, plan
    assert "TEMP B-TREE" not in page, page  # walks the key in order, no sort of the fleet
    if fresh_database_url.startswith("sqlite"):
        assert "ix_devices_decommissioned_at" in left, left  # the change feed still has its index
