"""Everything one app instance works with, built from its settings (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from edgeship.server.db import Database
from edgeship.server.metrics import ServerMetrics
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

    @classmethod
    def build(cls, settings: ServerSettings) -> ServerContext:
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)  # a fresh one is served as "not ready" until `server init`
        db = Database(settings.effective_database_url)
        expiry = Expiry(snapshot=settings.snapshot_expiry_days, timestamp=settings.timestamp_expiry_days)
        return cls(
            settings=settings,
            db=db,
            storage=LocalStorage(data / "repository", data / "uploads"),
            repo=ServerRepository(data / "repository", data / "keys", expiry),
            metrics=ServerMetrics(db),
        )


async def context(request: Request) -> ServerContext:
    """FastAPI dependency: the context of the app serving this request (async: no thread hop)."""
    return request.app.state.ctx
