"""The fleet's hot queries look devices up by primary key, whatever the fleet's size: no plan
reaches them through an index that holds (nearly) every device."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import insert, select

from edgeship.server import fleet
from edgeship.server.db import Database
from edgeship.server.models import Device

FLEET = 3000


def _plan(db: Database, statement: object, params: dict) -> str:
    """The database's plan for ``statement``, as text; ``params`` are given to the driver as they are."""
    with db.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
        values = compiled.construct_params(params)
        driver_params = tuple(values[k] for k in compiled.positiontup) if compiled.positional else values
        explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        rows = conn.exec_driver_sql(explain + compiled.string, driver_params).all()
    return "\n".join(str(r[-1]) for r in rows)


def test_checkin_batch_and_device_pages_use_the_primary_key(fresh_database_url: str) -> None:
    """Check-in's UPDATE, a page of the device list and the change feed's read of the
    decommissioned, planned over a fleet of 3,000."""
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
        rows = [(i, "0" * 64, "idle", "null", "null", None) for i in ids[100:132]]
        batch = _plan(db, fleet._checkin_statement(db.dialect), {"batch": json.dumps(rows), "n": len(rows), "now": now.isoformat()})
        page = _plan(db, select(Device).where(Device.id > "dev_", Device.decommissioned_at.is_(None)).order_by(Device.id).limit(500), {})
        left = _plan(db, select(Device.id).where(Device.decommissioned_at > now.isoformat()), {})
    finally:
        db.dispose()
    # Before the index was partial, SQLite read every active device through it for both.
    for plan in (batch, page):
        assert "ix_devices_decommissioned_at" not in plan, plan
    assert "TEMP B-TREE" not in page, page  # walks the key in order, no sort of the fleet
    if fresh_database_url.startswith("sqlite"):
        assert "ix_devices_decommissioned_at" in left, left  # the change feed still has its index
        assert "SEARCH devices USING INDEX sqlite_autoindex_devices_1 (id=?)" in batch, batch  # each batch row by key
    else:
        # The planner knows the batch's size (it guesses 100 rows of a JSON set function, and
        # then preferred hashing the whole fleet to looking the batch's devices up by key).
        scan = next(line for line in batch.splitlines() if "Scan on v " in line)
        assert f"rows={len(rows)} " in scan, batch
