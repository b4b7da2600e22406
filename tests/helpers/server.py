"""A real edgeship server in a subprocess, on a free loopback port, and test databases.

``ServerProcess`` runs ``edgeship server`` exactly as an operator would and waits for
``/readyz``. ``postgres_url`` gives a fresh schema on the test PostgreSQL (from
``EDGESHIP_TEST_DATABASE_URL``) so parallel and repeated runs never share tables.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgeship.loopback import CLI, free_port, server_ready

PG_ENV = "EDGESHIP_TEST_DATABASE_URL"

class ServerProcess:
    def __init__(self, data_dir: Path, database_url: str = "", extra: Sequence[str] = (), env: dict[str, str] | None = None, ca: Path | None = None) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        tls = "--tls-cert" in extra
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ca = ca
        args = [*CLI, "server", "--data-dir", str(data_dir), "--port", str(self.port), *extra]
        if database_url:
            args += ["--database-url", database_url]
        self.log = data_dir.parent / f"server-{self.port}.log"
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if server_ready(self.url, self.ca):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


@contextmanager
def running_server(data_dir: Path, database_url: str = "", extra: Sequence[str] = (), **kwargs: object) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, database_url, extra, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def postgres_base_url() -> str:
    """The test PostgreSQL URL; skips (fails in CI) when it is not configured."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set, but CI=true: the PostgreSQL suite must run in CI")
        pytest.skip(f"PostgreSQL tests need {PG_ENV}=postgresql+psycopg://user:pw@host/db")
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose connections use a new, empty schema; dropped afterwards."""
    from sqlalchemy import create_engine, text

    base = postgres_base_url()
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, empty and unmigrated: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_schema() as url:
        yield url
