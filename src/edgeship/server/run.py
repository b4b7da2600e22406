"""Running the server on uvicorn, in one process or several workers."""

from __future__ import annotations

import os
from typing import Any

import uvicorn

from edgeship.server import logs
from edgeship.server.app import create_app, freeze_heap
from edgeship.server.db import Database
from edgeship.server.settings import ServerSettings


def serve(settings: ServerSettings) -> None:
    """Block serving HTTP(S) until interrupted."""
    logs.configure(settings.log_level)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.tls:
        options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    if settings.workers == 1:
        app = create_app(settings)
        freeze_heap()
        uvicorn.run(app, **options)
        return
    # Migrate once here so that workers starting together do not race on the schema.
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
    finally:
        db.dispose()
    os.environ.update(settings.model_copy(update={"migrate": False}).to_env())
    uvicorn.run("edgeship.server.app:app_from_env", factory=True, workers=settings.workers, **options)
