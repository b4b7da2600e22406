"""``edgeship server init``: give a server data dir its repository and online keys.

Copies from the operator workspace the root metadata (every version), the current targets,
snapshot and timestamp, the files those targets name, and the snapshot and timestamp keys.
The root and targets keys never leave the workspace. Then migrates the database and makes
the first admin token.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgeship.errors import ConflictError
from edgeship.server.auth import create_admin_token
from edgeship.server.credentials import Credential
from edgeship.server.db import Database
from edgeship.server.settings import ServerSettings
from edgeship.store.fsutil import write_atomic
from edgeship.trust import keys as keyfiles
from edgeship.trust.repository import ONLINE_ROLES
from edgeship.workspace import Workspace


def init_data_dir(settings: ServerSettings, ws: Workspace, admin_name: str = "bootstrap") -> Credential:
    data = settings.data_dir
    metadata = data / "repository" / "metadata"
    if metadata.exists() and any(metadata.iterdir()):
        raise ConflictError(
            f"{data} already holds a repository",
            hint="start it with `edgeship server --data-dir`; make more admin tokens with `edgeship admin token create`",
        )
    for role in ONLINE_ROLES:
        # Saved unencrypted (owner-only): an online key must sign with no one at the keyboard.
        keyfiles.save(data / "keys" / f"{role}.pem", ws.keyring.private_key(role), None)
    repo = ws.repository()
    src = repo.metadata_dir
    wanted = [p.name for p in src.glob("*.root.json")] + [
        "root.json",
        f"{repo.targets().signed.version}.targets.json",
        f"{repo.load('snapshot').signed.version}.snapshot.json",
    ]
    for name in wanted:
        write_atomic(metadata / name, (src / name).read_bytes())
    for path in repo.targets().signed.targets:
        _link_or_copy(ws.repo_dir / path, data / "repository" / path)
    # The timestamp goes last: its presence is what makes the repository ready.
    write_atomic(metadata / "timestamp.json", (src / "timestamp.json").read_bytes())
    (data / "uploads").mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
        with db.write() as session:
            return create_admin_token(session, admin_name)
    finally:
        db.dispose()


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:  # another file system: copy instead
        shutil.copy2(src, dest)
