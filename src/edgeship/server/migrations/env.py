"""Alembic environment: runs on the engine the server hands over, never on an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from edgeship.server.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # Several instances may start at once: one migrates, the others wait and find head.
        connection.execute(text("SELECT pg_advisory_lock(7205120001)"))
        connection.commit()
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(7205120001)"))
            connection.commit()
