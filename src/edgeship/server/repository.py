"""The server's TUF repository: it holds only the online (snapshot, timestamp) keys.

Operators publish targets signed in their workspace (``publish``); the server checks them
against the root it trusts, installs the manifests they name, and signs a new snapshot and
timestamp. ``refresh_timestamp_if_due`` is the job that keeps devices from seeing a stale
(frozen) repository. Both run under the database's ``repository`` lock, start from the
newest metadata in the database and store what they sign there in the same transaction, so
several server instances never sign the same version twice nor lose each other's updates.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from edgeship.errors import NotFoundError, TrustError, ValidationError
from edgeship.release.manifest import parse_version
from edgeship.server import shared_metadata
from edgeship.server.db import Database
from edgeship.server.models import Lock
from edgeship.server.shared_metadata import MetadataCache
from edgeship.server.storage import BlobStorage, repo_key
from edgeship.store.digest import Digest
from edgeship.trust.repository import Expiry, KeyRing, Repository
from edgeship.trust.targets import release_entries

log = logging.getLogger("edgeship.server.repository")


def hold_lock(session: Session, name: str) -> None:
    """Take a named lock until the session's transaction ends.

    The UPDATE takes a row lock on PostgreSQL and the database write lock on SQLite, so a
    second instance waits here instead of signing concurrently.
    """
    session.execute(
        update(Lock).where(Lock.name == name).values(holder=socket.gethostname(), acquired_at=datetime.now(timezone.utc))
    )


class _RecordingRepository(Repository):
    """A repository that also remembers what it wrote, for the database copy."""

    recorded: dict[str, bytes] | None = None

    def _store(self, name: str, raw: bytes) -> None:
        super()._store(name, raw)
        if self.recorded is not None:
            self.recorded[name] = raw


class ServerRepository:
    """The signed metadata: the database holds it, ``<data-dir>/repository/metadata`` caches it."""

    def __init__(self, repo_dir: Path, keys_dir: Path, expiry: Expiry, db: Database) -> None:
        self.repo = _RecordingRepository(repo_dir, KeyRing(keys_dir), expiry)
        self.db = db
        self.cache = MetadataCache(self.repo.metadata_dir)

    def refresh(self, session: Session | None = None) -> None:
        """Bring the local copy up to the database's newest generation (one indexed read if it is)."""
        if session is not None:
            self.cache.refresh(session)
            return
        with self.db.read() as own:
            self.cache.refresh(own)

    @property
    def ready(self) -> bool:
        self.refresh()
        return (self.repo.metadata_dir / "timestamp.json").is_file()

    def adopt(self) -> bool:
        """Move a data dir's metadata into a database that holds none yet; True if it did.

        The upgrade path for a server that kept its metadata only on disk, and the first
        ``server init``. Under the repository lock, so two instances never both seed it.
        When the database holds the metadata already, local versioned files it does not hold
        are removed: a signing killed before its commit wrote them, and they would be taken
        for the newest versions.
        """
        local = (self.repo.metadata_dir / "timestamp.json").is_file()
        with self.cache.lock, self.db.write() as session:
            hold_lock(session, "repository")
            if shared_metadata.generation(session) is not None:
                removed = self.cache.drop_uncommitted(session)
                if removed:
                    log.warning("removed metadata a signing wrote but never committed: %s", ", ".join(removed))
                self.cache.refresh(session)
                return False
            if not local:
                return False
            gen = shared_metadata.save(session, shared_metadata.local_files(self.repo.metadata_dir))
        self.cache.generation = gen  # only once committed: the local files are then that generation
        log.info("copied the repository metadata into the database")
        return True

    @contextmanager
    def _signing(self) -> Iterator[Session]:
        """A write transaction holding the repository lock, on the newest metadata; what the
        repository signs inside is stored in the database in the same transaction."""
        # The cache lock covers the cleanup too: else another thread's signing could start
        # between the commit and the cleanup, and have its record reset or its files discarded.
        with self.cache.lock:
            recorded: dict[str, bytes] = {}
            self.repo.recorded = recorded
            try:
                with self.db.write() as session:
                    hold_lock(session, "repository")
                    # Read under the lock: signing from a stale cache would lose another instance's
                    # update. Another worker sharing this data dir may have rewritten its mutable
                    # files, so those are compared with the database whatever the cache believes.
                    self.cache.refresh(session)
                    self.cache.restore_mutable(session)
                    yield session
                    gen = shared_metadata.save(session, recorded) if recorded else None
                if gen is not None:
                    self.cache.generation = gen
            except BaseException:
                self.cache.discard(recorded)  # written locally, never committed
                raise
            finally:
                self.repo.recorded = None

    def releases(self) -> list[dict]:
        """Signed releases as ``{name, version, release_id, rollback_to, path, length}``."""
        self.refresh()
        return release_entries(self.repo.all_targets())

    def find_release(self, name: str, version: str) -> dict:
        for entry in self.releases():
            if entry["name"] == name and entry["version"] == version:
                return entry
        raise NotFoundError(f"release {name}@{version} is not published on this server", hint="push it with `edgeship release push --server URL`")

    def latest_version(self, name: str) -> str | None:
        versions = [e["version"] for e in self.releases() if e["name"] == name]
        return max(versions, key=parse_version) if versions else None

    def publish(self, storage: BlobStorage, targets_bytes: bytes, roots: list[bytes], bins: dict[str, bytes] | None = None) -> dict:
        """Verify and publish operator-signed targets (and the bins that changed); every file
        they name must be uploaded first."""
        incoming = [f for raw in [targets_bytes, *(bins or {}).values()] for f in _targets_files(raw)]
        missing = [f"sha256:{h}" for _path, h in incoming if not storage.has_blob(Digest(h))]
        if missing:
            raise ValidationError(
                f"{len(missing)} file(s) named by the targets are not uploaded: {', '.join(missing[:5])}",
                hint="upload them to /v1/admin/uploads/sha256/<hex> first (`edgeship release push --server` does)",
            )
        with self._signing():
            # Verify everything before writing anything: targets that do not verify must leave
            # the served manifests and deltas of the published release exactly as they were.
            verified = self.repo.verify_targets(targets_bytes, roots, bins)
            # Then the files, before the metadata: once the timestamp names the new targets,
            # devices may fetch them.
            for path, hexdigest in _to_install(incoming, self.repo.all_targets(), storage):
                storage.install(path, Digest(hexdigest))
            targets_version = self.repo.write_targets(verified)
        log.info("published targets", extra={"targets_version": targets_version})
        return self.versions() | {"releases": sorted(f"{e['name']}@{e['version']}" for e in self.releases())}

    def versions(self) -> dict:
        self.refresh()
        return {
            "targets_version": self.repo.targets().signed.version,
            "snapshot_version": self.repo.load("snapshot").signed.version,
            "timestamp_version": self.repo.load("timestamp").signed.version,
            "root_version": self.repo.root().signed.version,
            "bins": {name: md.signed.version for name, md in self.repo.bins().items()},
        }

    def timestamp_expires(self) -> datetime:
        self.refresh()
        return self.repo.load("timestamp").signed.expires

    def refresh_timestamp_if_due(self, margin: timedelta) -> bool:
        """Re-sign the timestamp when it expires within ``margin``; True if it did."""
        if self.timestamp_expires() - datetime.now(timezone.utc) > margin:
            return False
        with self._signing():
            # Another instance may have refreshed it while this one waited for the lock.
            if self.repo.load("timestamp").signed.expires - datetime.now(timezone.utc) > margin:
                return False
            self.repo.refresh_timestamp()
        log.info("re-signed timestamp", extra={"expires": self.timestamp_expires().isoformat()})
        return True


def _to_install(incoming: list[tuple[str, str]], published: dict[str, TargetFile], storage: BlobStorage) -> list[tuple[str, str]]:
    """The manifests and deltas to copy from uploaded blobs into place.

    One the published targets already name with the same hash, and that is stored, is left
    alone: a push rewrites no file of an earlier release (nor copies every delta again).
    """
    return [
        (path, hexdigest)
        for path, hexdigest in incoming
        if not path.startswith("blobs/")
        and not (path in published and published[path].hashes.get("sha256") == hexdigest and storage.locate(path) is not None)
    ]


def _targets_files(targets_bytes: bytes) -> list[tuple[str, str]]:
    """(target path, sha256 hex) of every file a targets document names, before trusting it.

    Only used to check that the files exist; the signature is checked by ``verify_targets``.
    """
    try:
        md = Metadata.from_bytes(targets_bytes)
    except DeserializationError as exc:
        raise TrustError(f"targets metadata cannot be parsed: {exc}", hint="send the targets.json file exactly as signed") from exc
    if not isinstance(md.signed, Targets):
        raise TrustError(f"expected targets metadata, got {md.signed.type}")
    out = []
    for path, tf in md.signed.targets.items():
        hexdigest = tf.hashes.get("sha256")
        if hexdigest is None or len(hexdigest) != 64:
            raise ValidationError(f"target {path} has no sha256 hash", hint="edgeship targets always carry sha256")
        try:
            repo_key(path)
        except NotFoundError as exc:
            raise ValidationError(f"target path {path!r} is not one edgeship serves", hint="targets name releases/, blobs/ or deltas/ files") from exc
        out.append((path, hexdigest))
    return out

