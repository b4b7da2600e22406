"""Alembic environment: runs on the engine the server hands over, never on an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from edgeship.server.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if connection.dialect.name == "postgresql":
        # Several instances may start at once: one migrates, the others wait and find head.
        connection.execute(text("SELECT pg_advisory_lock(7205120001)"))
        connection.commit()
    if sqlite:
        # Batch mode rebuilds a table by copying it and dropping the old one, which foreign keys
        # pointing at it refuse (Alembic's batch docs). The pragma is ignored inside a
        # transaction, so it goes to the driver before the migration's BEGIN.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(7205120001)"))
            connection.commit()
        if sqlite:
            connection.rollback()  # a no-op after the commit; after a failure the pragma needs no transaction
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
