"""Everything one app instance works with, built from its settings (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.exc import DBAPIError

from edgeship.errors import UsageError
from edgeship.server import fleet, schemas
from edgeship.server.db import Database
from edgeship.server.group_commit import GroupCommit
from edgeship.server.metrics import ServerMetrics
from edgeship.server.push import Pusher
from edgeship.server.repository import ServerRepository
from edgeship.server.settings import ServerSettings
from edgeship.server.storage import BlobStorage, LocalStorage
from edgeship.trust.repository import Expiry


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    storage: BlobStorage
    repo: ServerRepository
    metrics: ServerMetrics
    push: Pusher | None = None
    checkins: GroupCommit[fleet.CheckinCall, schemas.CheckinResponse] = field(init=False)

    def __post_init__(self) -> None:
        self.checkins = GroupCommit(self._write_checkins)

    def _write_checkins(self, calls: list[fleet.CheckinCall]) -> list[schemas.CheckinResponse | Exception]:
        """One batch of check-ins, one transaction (in a worker thread, see ``GroupCommit``).

        Its connection is not pinged first (a round trip per batch): one that died idle in
        the pool (the database restarted) fails the batch, the pool then drops its
        connections, and the batch is written once more on a fresh one. Writing a batch again
        is safe even if the failure came after its commit: a check-in rewrites the same report."""
        try:
            return self._write_checkins_once(calls)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._write_checkins_once(calls)

    def _write_checkins_once(self, calls: list[fleet.CheckinCall]) -> list[schemas.CheckinResponse | Exception]:
        with self.db.write(ping=False) as session:
            return list(fleet.checkin_batch(session, calls, self.settings.poll_interval_s))

    @classmethod
    def build(cls, settings: ServerSettings) -> ServerContext:
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)  # a fresh one is served as "not ready" until `server init`
        db = Database(settings.effective_database_url)
        expiry = Expiry(snapshot=settings.snapshot_expiry_days, timestamp=settings.timestamp_expiry_days)
        metrics = ServerMetrics(db)
        return cls(
            settings=settings,
            db=db,
            storage=open_storage(settings),
            repo=ServerRepository(data / "repository", data / "keys", expiry, db),
            metrics=metrics,
            push=_push(settings, db, metrics),
        )


def open_storage(settings: ServerSettings) -> BlobStorage:
    """The blob store ``--blob-store`` names: the data dir, or an S3 bucket."""
    local = LocalStorage(settings.data_dir / "repository", settings.data_dir / "uploads")
    if not settings.blob_store:
        return local
    try:
        from edgeship.server.s3 import S3Storage  # boto3 is the optional [s3] extra
    except ImportError as exc:
        raise UsageError(f"--blob-store {settings.blob_store} needs boto3", hint="pip install 'edgeship[s3]'") from exc
    expiry = settings.s3_presign_expiry_s if settings.s3_presign else None
    # TUF metadata stays in the data dir, where the server signs it.
    return S3Storage.from_url(settings.blob_store, metadata=local, presign_expiry_s=expiry)


def _push(settings: ServerSettings, db: Database, metrics: ServerMetrics) -> Pusher | None:
    if not settings.mqtt:
        return None
    pusher = Pusher(settings, metrics.push_notices)
    db.on_write(pusher.committing, pusher.committed, pusher.rolled_back)
    return pusher


async def context(request: Request) -> ServerContext:
    """FastAPI dependency: the context of the app serving this request (async: no thread hop)."""
    return request.app.state.ctx
