"""``edgeship server init``: give a server data dir its repository and online keys.

The first instance copies from the operator workspace the files its targets name into the
blob store (local disk or S3, skipping what is there), the snapshot and timestamp keys, and
the root metadata (every version), the current targets, snapshot and timestamp into the
database (its data dir caches them). Another instance over the same database finds the
metadata there: it installs the keys, after checking they are the ones the trusted root
names, and copies what the blob store lacks. The root and targets keys never leave the
workspace. Each run makes a new admin token. A run cut short (no boto3, refused
credentials, a dropped network) is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuf.api.metadata import Metadata, Root

from edgeship.errors import ConflictError, TrustError
from edgeship.server import shared_metadata
from edgeship.server.auth import create_admin_token
from edgeship.server.context import open_storage
from edgeship.server.credentials import Credential
from edgeship.server.db import Database
from edgeship.server.repository import ServerRepository
from edgeship.server.settings import ServerSettings
from edgeship.server.storage import BlobStorage
from edgeship.store.fsutil import write_atomic
from edgeship.trust import keys as keyfiles
from edgeship.trust.repository import ONLINE_ROLES, Expiry
from edgeship.workspace import Workspace

Report = Callable[[str], None]


def init_data_dir(settings: ServerSettings, ws: Workspace, admin_name: str = "bootstrap", report: Report | None = None) -> Credential:
    say = report or (lambda _line: None)
    data = settings.data_dir
    metadata = data / "repository" / "metadata"
    if metadata.exists() and any(metadata.iterdir()):
        if not _same_repository(ws, metadata):
            raise ConflictError(
                f"{data} already holds another repository than workspace {ws.root}'s",
                hint="give this workspace's server a new --data-dir, or run it from the workspace that made this one",
            )
        say(f"{data} already holds this repository: finishing its setup")
    storage = open_storage(settings)  # before anything is written: a missing boto3 fails here
    data.mkdir(parents=True, exist_ok=True)  # the SQLite database may live in it
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
        with db.read() as session:
            shared_root = shared_metadata.read(session, "root.json")
        if shared_root is not None:
            _check_online_keys(ws, shared_root)
            say("the database already holds this repository's metadata: installing the online keys")
        (data / "uploads").mkdir(parents=True, exist_ok=True)
        # The files before the keys and metadata: a copy cut short leaves no repository that
        # names files the blob store lacks, and the next run sends only what is missing.
        copy_targets(settings, storage, ws, say)
        _install_keys(data, ws)
        if shared_root is None:
            if not (metadata / "timestamp.json").is_file():  # else a data dir from before the shared metadata
                _copy_metadata(ws, metadata)
            ServerRepository(data / "repository", data / "keys", Expiry(), db).adopt()
        with db.write() as session:
            return create_admin_token(session, admin_name)
    finally:
        db.dispose()


def _same_repository(ws: Workspace, metadata: Path) -> bool:
    """True if the data dir's metadata starts from the workspace's first root (or, cut short
    before that file was written, holds nothing the workspace does not)."""
    src = ws.repository().metadata_dir
    first = metadata / "1.root.json"
    if first.is_file():
        return first.read_bytes() == (src / "1.root.json").read_bytes()
    return all((src / p.name).is_file() and (src / p.name).read_bytes() == p.read_bytes() for p in metadata.glob("*.json"))


def _install_keys(data: Path, ws: Workspace) -> None:
    for role in ONLINE_ROLES:
        # Saved unencrypted (owner-only): an online key must sign with no one at the keyboard.
        keyfiles.save(data / "keys" / f"{role}.pem", ws.keyring.private_key(role), None)


def _check_online_keys(ws: Workspace, root_bytes: bytes) -> None:
    """Refuse keys the shared root does not name: an instance signing with them would serve
    metadata every device rejects."""
    root: Root = Metadata.from_bytes(root_bytes).signed
    for role in ONLINE_ROLES:
        keyid = keyfiles.public_key(ws.keyring.private_key(role)).keyid
        if keyid not in root.roles[role].keyids:
            raise TrustError(
                f"the workspace's {role} key is not the one the server's root (version {root.version}) names",
                hint="run `edgeship server init` from the workspace that created this server's repository (or pull its newest root first)",
            )


def _copy_metadata(ws: Workspace, metadata: Path) -> None:
    repo = ws.repository()
    src = repo.metadata_dir
    wanted = [p.name for p in src.glob("*.root.json")] + [
        "root.json",
        f"{repo.targets().signed.version}.targets.json",
        *(f"{md.signed.version}.{name}.json" for name, md in repo.bins().items()),
        f"{repo.load('snapshot').signed.version}.snapshot.json",
        "timestamp.json",  # last: its presence is what makes the repository ready
    ]
    for name in wanted:
        write_atomic(metadata / name, (src / name).read_bytes())


def copy_targets(settings: ServerSettings, storage: BlobStorage, ws: Workspace, say: Report) -> tuple[int, int]:
    """Put every file the workspace's targets name into the blob store; (copied, already there)."""
    paths = sorted(ws.repository().all_targets())
    copied = skipped = 0
    for i, path in enumerate(paths, 1):
        if storage.locate(path) is not None:
            skipped += 1  # so a second init, or one cut short, only sends what is missing
            continue
        src = ws.repo_dir / path
        storage.put_file(path, src)
        copied += 1
        if settings.blob_store:
            say(f"  [{i}/{len(paths)}] uploaded {path} ({src.stat().st_size / 2**20:.1f} MiB)")
    if settings.blob_store:
        say(f"blob store {settings.blob_store}: {copied} file(s) uploaded, {skipped} already there")
    return copied, skipped
