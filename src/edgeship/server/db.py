"""Database engine, sessions and migrations (SQLite in WAL mode, or PostgreSQL).

SQLite needs care to serve many writers: WAL lets readers run beside one writer, and
write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on the busy
timeout instead of failing when a read transaction tries to upgrade to a write.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from edgeship.errors import ServerError

_WRITE = "edgeship_write"


class Database:
    """One engine and its two session factories: ``read()`` and ``write()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        # Check-in batches skip the pool's liveness test (pre-ping), one more round trip per
        # transaction on check-in's hot path: their pool of its own, with no pre-ping.
        self._unpinged = make_engine(url, pre_ping=False) if self.dialect == "postgresql" else self.engine
        self._write_unpinged = sessionmaker(self._unpinged.execution_options(**{_WRITE: True}), expire_on_commit=False)
        database = make_url(url).database
        self._writers = WriterQueue(Path(f"{database}.write-lock")) if self.dialect == "sqlite" and database else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self, ping: bool = True) -> Iterator[Session]:
        """A transaction that commits on clean exit and rolls back on any error. ``ping=False``:
        on a pooled connection not tested first, for callers that write again, on a fresh
        connection, what fails on a dead one (``DBAPIError.connection_invalidated``)."""
        factory = self._write if ping else self._write_unpinged
        with self._writers or nullcontext(), factory() as session, session.begin():
            yield session

    def on_write(self, committing: Callable[[Session], None], committed: Callable[[Session], None],
                 rolled_back: Callable[[Session], None]) -> None:
        """Call ``committing(session)`` just before a write transaction commits, ``committed(session)``
        once it has (``rolled_back`` if it did not): for work that must not happen before the
        commit, such as push notices."""
        for factory in {self._write, self._write_unpinged}:
            event.listen(factory, "before_commit", committing)
            event.listen(factory, "after_commit", committed)
            event.listen(factory, "after_soft_rollback", lambda session, _previous: rolled_back(session))

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise ServerError(f"database unreachable: {exc.__class__.__name__}", hint="check --database-url and the database server") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it already is)."""
        try:
            command.upgrade(alembic_config(self.engine), "head")
        except OperationalError as exc:
            raise ServerError(f"cannot migrate the database: {exc.orig}", hint="check --database-url and that the database exists") from exc

    def dispose(self) -> None:
        for engine in {self.engine, self._unpinged}:
            engine.dispose()
        if self._writers is not None:
            self._writers.close()


class WriterQueue:
    """Lets one SQLite writer at a time in, across threads and worker processes.

    SQLite allows one writer anyway; without this queue the others spin in its busy
    handler, which sleeps up to 100 ms between tries, and p99 latency explodes under load.
    A blocking ``flock`` wakes the next writer the moment the lock is free.
    """

    def __init__(self, path: Path) -> None:
        self._thread_lock = threading.Lock()  # flock does not exclude threads sharing one fd
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        os.close(self._fd)


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    """An engine for ``url``; ``pre_ping``: test a pooled PostgreSQL connection before each use
    (a database restart leaves the pool's connections dead)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=pre_ping)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so the "begin" hook below decides.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode loses at most the last commits on power loss, never consistency.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Pages read through a memory map instead of read() calls: a check-in batch touches
        # rows spread over the whole devices table, and each connection's page cache is
        # dropped whenever another connection wrote. Halved the check-in writer's system CPU
        # with 10,000 devices. Address space only: memory is the OS page cache's.
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("edgeship.server") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg
