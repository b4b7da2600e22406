"""A real workspace with a real signed release, pushed to a real server over HTTP, on SQLite
and on PostgreSQL (``EDGESHIP_TEST_DATABASE_URL``)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from edgeship.cli.main import run
from edgeship.client import OperatorClient
from edgeship.server import fleet as fleet_mod
from edgeship.server import schemas
from edgeship.server.credentials import Credential
from edgeship.server.db import Database
from edgeship.store.digest import Digest
from edgeship.workspace import Workspace
from tests.helpers.seaweedfs import seaweedfs  # noqa: F401 - the S3 tests' fixture
from tests.helpers.server import (
    ServerProcess,
    fresh_database_url,  # noqa: F401 - a database of the test's own, on each dialect
    postgres_schema,
)


@dataclass
class Device:
    id: str
    secret: str
    tags: dict[str, str]

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.id}.{self.secret}"}


@dataclass
class Fleet:
    """A running server with app@1.0.0 pushed, and the workspace that signed it."""

    workspace: Path
    server: ServerProcess
    admin_token: str
    blob: bytes  # the 'weights' component of app@1.0.0
    blob_hex: str
    database_url: str
    admin: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.Client(base_url=self.server.url, headers={"authorization": f"Bearer {self.admin_token}"}, verify=self._verify())

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.server.ca) if self.server.ca else True

    @property
    def url(self) -> str:
        return self.server.url

    def anon(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, verify=self._verify())

    def enroll_token(self, **body: object) -> dict:
        r = self.admin.post("/v1/admin/enroll-tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def enroll(self, tags: dict[str, str] | None = None, facts: dict | None = None) -> Device:
        token = self.enroll_token(tags=tags or {}, uses=1)["token"]
        with self.anon() as c:
            r = c.post("/v1/devices/enroll", json={"token": token, "facts": facts or {"arch": "aarch64", "ram": 8 << 30}})
        assert r.status_code == 201, r.text
        body = r.json()
        return Device(body["device_id"], body["secret"], body["tags"])


def cut_then_resume_upload(fleet: Fleet, data: bytes, cut_at: int) -> list[int]:
    """PATCH all of ``data`` but drop the connection after ``cut_at`` bytes, then resume as
    ``release push`` does; returns the offsets the resumed upload reported."""
    digest = Digest(hashlib.sha256(data).hexdigest())
    host, port = fleet.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        head = (
            f"PATCH /v1/admin/uploads/sha256/{digest.hex} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {fleet.admin_token}\r\nUpload-Offset: 0\r\nUpload-Length: {len(data)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        s.sendall(head.encode() + data[:cut_at])
        time.sleep(0.3)
    with OperatorClient(fleet.url, fleet.admin_token) as client:
        deadline = time.monotonic() + 10
        while client.upload_offset(digest)[0] < cut_at and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.upload_offset(digest) == (cut_at, False)
        src = fleet.workspace.parent / f"resume-{digest.hex[:12]}.bin"
        src.write_bytes(data)
        sent: list[int] = []
        assert client.upload(src, digest, len(data), sent.append) is True
        assert client.upload_offset(digest) == (len(data), True)
        assert client.upload(src, digest, len(data)) is False  # already there: skipped by digest
    return sent


def cli(*args: str | Path) -> int:
    return run([str(a) for a in args])


def make_workspace(root: Path) -> tuple[Path, bytes]:
    """A workspace with app@1.0.0: a config and a 3 MiB 'weights' file of random bytes."""
    ws = root / "ws"
    Workspace.init(ws, None)
    files = root / "files"
    files.mkdir()
    (files / "config.json").write_text('{"threshold": 0.5}')
    blob = os.urandom(3 << 20)
    (files / "weights.bin").write_bytes(blob)
    assert cli("release", "push", "app", "-v", "1.0.0", "-c", f"config={files / 'config.json'}", "-c", f"weights:file={files / 'weights.bin'}", "-w", ws) == 0
    return ws, blob


def start_fleet(root: Path, database_url: str, extra: tuple[str, ...] = ()) -> Fleet:
    ws, blob = make_workspace(root)
    data = root / "data"
    assert cli("server", "init", "--data-dir", data, "--database-url", database_url, "-w", ws) == 0
    server = ServerProcess(data, database_url, extra)
    workspace = Workspace.open(ws)
    workspace.config.server_url = server.url  # as `server init --url` saves it: the port is only known now
    workspace.save_config()
    return Fleet(ws, server, workspace.config.server_admin_token, blob, hashlib.sha256(blob).hexdigest(), database_url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """'' (SQLite in the data dir) or a fresh PostgreSQL schema for this test session."""
    if request.param == "sqlite":
        yield ""
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session")
def fleet(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = start_fleet(tmp_path_factory.mktemp("fleet"), database_url)
    yield f
    f.admin.close()
    f.server.stop()


@pytest.fixture
def new_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """A server of one's own (SQLite), for tests that change server-wide state or flags."""
    started: list[Fleet] = []

    def start(*extra: str) -> Fleet:
        f = start_fleet(tmp_path / f"f{len(started)}", "", tuple(extra))
        started.append(f)
        return f

    yield start
    for f in started:
        f.admin.close()
        f.server.stop()


def enrolled_in(db: Database, n: int, facts: schemas.Facts | None = None) -> list[Credential]:
    """``n`` devices enrolled straight into ``db`` (tag k=v), each presenting ``facts``."""
    with db.write() as session:
        token = fleet_mod.create_enroll_token(session, schemas.EnrollTokenCreate(tags={"k": "v"}))
    creds = []
    for _ in range(n):
        with db.write() as session:
            answer = fleet_mod.enroll(session, schemas.EnrollRequest(token=token.token, facts=facts or schemas.Facts()), 30)
        creds.append(Credential(answer.device_id, answer.secret))
    return creds
