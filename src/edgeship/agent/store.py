"""The device store: verified blobs, installed releases, and the `current`/`previous` links.

Installing never writes into a release the device runs: a release is built beside the
others as ``releases/.<id>.staging`` (hard links into the blob store, so a 1 GiB model
costs no copy), made durable, then renamed into place. Switching replaces a symlink with
``rename``, which is atomic: after a crash `current` names the old or the new release,
never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgeship.agent.journal import crashpoint
from edgeship.errors import StoreError, ValidationError
from edgeship.release.manifest import Manifest, base_file_name
from edgeship.store.digest import Digest, hash_file
from edgeship.store.fsutil import fsync_dir, write_atomic
from edgeship.store.local import LocalBlobStore

MANIFEST = "manifest.json"
CURRENT, PREVIOUS = "current", "previous"


@dataclass
class FsckReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    checked_blobs: int = 0
    checked_releases: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems


class DeviceStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = LocalBlobStore(self.root / "store" / "blobs")
        self.partial_dir = self.root / "store" / "partial"
        self.manifest_dir = self.root / "store" / "manifests"
        self.releases_dir = self.root / "releases"

    # -- paths and reading ----------------------------------------------------------------

    def partial(self, digest: Digest) -> Path:
        return self.partial_dir / digest.hex

    def release_dir(self, release_id: str) -> Path:
        return self.releases_dir / release_id

    def pending_manifest(self, release_id: str) -> Path:
        return self.manifest_dir / f"{release_id}.json"

    def link(self, name: str) -> str | None:
        """The release ID `current` or `previous` points at, or None."""
        try:
            return Path(os.readlink(self.root / name)).name
        except FileNotFoundError:
            return None

    def manifest(self, release_id: str) -> Manifest:
        return Manifest.from_bytes((self.release_dir(release_id) / MANIFEST).read_bytes())

    def describe(self, release_id: str | None) -> dict[str, str] | None:
        """``{"name", "version", "release_id"}`` as the protocol's check-in wants it."""
        if release_id is None:
            return None
        try:
            m = self.manifest(release_id)
        except (OSError, ValidationError):
            return {"name": "?", "version": "0.0.0", "release_id": release_id}
        return {"name": m.name, "version": m.version, "release_id": release_id}

    def has_blob(self, digest: str) -> bool:
        """Whether the blob ``sha256:<hex>`` is in the store (an installed base model, say)."""
        return self.blobs.path(Digest(digest.split(":", 1)[-1])).is_file()

    def is_complete(self, release_id: str) -> bool:
        """Cheap check (no hashing): manifest matches the ID, every component is its blob."""
        d = self.release_dir(release_id)
        try:
            data = (d / MANIFEST).read_bytes()
            if hashlib.sha256(data).hexdigest() != release_id:
                return False
            m = Manifest.from_bytes(data)
            for c in m.components:
                f, blob = (d / c.path).stat(), self.blobs.path(Digest(c.hexdigest)).stat()
                if (f.st_ino, f.st_dev) != (blob.st_ino, blob.st_dev) or f.st_size != c.size:
                    return False
        except (OSError, ValidationError):
            return False
        return True

    # -- installing -----------------------------------------------------------------------

    def adopt(self, partial: Path, digest: Digest) -> None:
        """Move a verified download into the blob store (read-only, durable)."""
        dest = self.blobs.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(partial, 0o444)
        os.replace(partial, dest)
        fsync_dir(dest.parent)

    def save_manifest(self, release_id: str, data: bytes) -> None:
        write_atomic(self.pending_manifest(release_id), data)

    def stage(self, release_id: str) -> Path:
        """Build ``releases/<id>`` from the pending manifest and stored blobs; idempotent."""
        final = self.release_dir(release_id)
        if self.is_complete(release_id):
            return final
        data = self.pending_manifest(release_id).read_bytes()
        manifest = Manifest.from_bytes(data)
        staging = self.releases_dir / f".{release_id}.staging"
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
        # A release dir that exists but is incomplete was never pointed at (the switch
        # checks completeness first), so it is safe to rebuild.
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final)
        staging.mkdir(parents=True)
        try:
            for c in manifest.components:
                blob = self.blobs.path(Digest(c.hexdigest))
                if not blob.is_file():
                    raise StoreError(f"component {c.name} ({c.digest}) is missing from the device store",
                                     hint="the download step must finish first; the agent retries it")
                os.link(blob, staging / c.path)
            for base in manifest.adapter_bases() - {c.digest for c in manifest.components}:
                # An adapters-only release runs on a base installed before: the runtime finds it here.
                os.link(self.blobs.path(Digest(base.split(":", 1)[1])), staging / base_file_name(base))
            write_atomic(staging / MANIFEST, data, mode=0o444)
            fsync_dir(staging)
            os.replace(staging, final)
            fsync_dir(self.releases_dir)
        except OSError as exc:
            raise StoreError(f"cannot stage release {release_id[:12]}: {exc.strerror}",
                             hint="check free disk space and permissions of the data dir") from exc
        return final

    def _point(self, name: str, release_id: str | None) -> None:
        link = self.root / name
        if release_id is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            fsync_dir(self.root)
            return
        tmp = self.root / f".{name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # Relative target: the data dir can be moved or mounted elsewhere.
        os.symlink(f"releases/{release_id}", tmp)
        os.replace(tmp, link)
        fsync_dir(self.root)

    def switch(self, to_release: str, from_release: str | None) -> None:
        """Make ``to_release`` current and ``from_release`` previous; idempotent."""
        if not self.is_complete(to_release):
            raise StoreError(f"release {to_release[:12]} is not completely installed; refusing to switch to it",
                             hint="the agent stages it again; run `edgeship agent fsck` if this repeats")
        # previous first: if we die between the two renames, current still names the old
        # release and previous names it too, which is a complete (if redundant) state.
        if from_release is not None and from_release != to_release:
            self._point(PREVIOUS, from_release)
        crashpoint("switching:mid")
        self._point(CURRENT, to_release)

    def restore(self, current: str | None, previous: str | None) -> None:
        """Put `current` and `previous` back to what they were (rollback); idempotent."""
        self._point(CURRENT, current)
        self._point(PREVIOUS, previous)

    # -- housekeeping ---------------------------------------------------------------------

    def gc(self, keep: set[str]) -> list[str]:
        """Delete releases not in ``keep`` and every blob, partial or manifest they alone used."""
        removed = []
        wanted_blobs: set[str] = set()
        for rid in keep:
            with contextlib.suppress(OSError, ValidationError):
                m = self.manifest(rid)
                wanted_blobs.update(c.hexdigest for c in m.components)
                wanted_blobs.update(d.split(":", 1)[1] for d in m.adapter_bases())
        if self.releases_dir.is_dir():
            for d in self.releases_dir.iterdir():
                rid = d.name.removeprefix(".").removesuffix(".staging")
                if rid not in keep or d.name.startswith("."):
                    shutil.rmtree(d)
                    removed.append(f"release {rid[:12]}")
        for digest in list(self.blobs.digests()):
            if digest.hex not in wanted_blobs:
                os.unlink(self.blobs.path(digest))
                removed.append(f"blob {digest}")
        for d in (self.partial_dir, self.manifest_dir):
            if d.is_dir():
                for f in d.iterdir():
                    os.unlink(f)
                    removed.append(f"{d.name}/{f.name}")
        return removed

    def fsck(self, *, repair: bool = False) -> FsckReport:
        """Rehash every blob and check every release and link; ``repair`` removes what is bad.

        Repairs never touch a good `current`: corrupt blobs and broken releases are
        deleted (the agent downloads them again), a broken `current` falls back to a
        complete `previous`.
        """
        report = FsckReport()
        bad_blobs: set[str] = set()
        for digest in list(self.blobs.digests()):
            report.checked_blobs += 1
            path = self.blobs.path(digest)
            if hash_file(path)[0] != digest:
                report.problems.append(f"blob {digest} does not hash to its name")
                bad_blobs.add(digest.hex)
                if repair:
                    os.unlink(path)
                    report.repaired.append(f"deleted corrupt blob {digest}")
        # Links first: a repair may move `current` off a broken release, which can then go.
        self._check_links(report, bad_blobs, repair)
        releases = [d.name for d in self.releases_dir.iterdir()] if self.releases_dir.is_dir() else []
        for name in releases:
            if name.startswith("."):
                report.problems.append(f"unfinished staging directory releases/{name}")
                if repair:
                    shutil.rmtree(self.releases_dir / name)
                    report.repaired.append(f"removed releases/{name}")
                continue
            report.checked_releases += 1
            if not self.is_complete(name) or self._uses(name, bad_blobs):
                report.problems.append(f"release {name[:12]} is incomplete or has corrupt components")
                if repair and name not in (self.link(CURRENT), self.link(PREVIOUS)):
                    shutil.rmtree(self.releases_dir / name)
                    report.repaired.append(f"removed release {name[:12]}")
        return report

    def _uses(self, release_id: str, bad_blobs: set[str]) -> bool:
        try:
            return any(c.hexdigest in bad_blobs for c in self.manifest(release_id).components)
        except (OSError, ValidationError):
            return True

    def _check_links(self, report: FsckReport, bad_blobs: set[str], repair: bool) -> None:
        def good(rid: str | None) -> bool:
            return rid is not None and self.is_complete(rid) and not self._uses(rid, bad_blobs)

        cur, prev = self.link(CURRENT), self.link(PREVIOUS)
        if prev is not None and not good(prev):
            report.problems.append(f"`previous` points at a broken release {prev[:12]}")
            if repair:
                self._point(PREVIOUS, None)
                report.repaired.append("removed `previous`")
                prev = None
        if cur is not None and not good(cur):
            report.problems.append(f"`current` points at a broken release {cur[:12]}")
            if repair and good(prev):
                self.restore(prev, None)
                report.repaired.append(f"`current` now points at the previous release {prev[:12]}")
