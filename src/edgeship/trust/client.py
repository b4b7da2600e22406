"""Device-side verification on python-tuf's ngclient: nothing is used before it is verified.

The agent reuses this: it refreshes metadata, downloads a release's manifest and blobs
through the fetcher, and gets either verified files or a TrustError saying which attack
or fault was detected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from edgeship.errors import NotFoundError, ServerError, TrustError
from edgeship.release.manifest import Component, Manifest
from edgeship.store.digest import Digest
from edgeship.store.fsutil import write_atomic
from edgeship.trust import targets as names
from edgeship.trust.fetcher import fetcher_for


@dataclass
class VerifiedRelease:
    manifest: Manifest
    release_id: str
    files: dict[str, Path] = field(default_factory=dict)  # component name -> verified file


def repo_url(repo: str) -> str:
    """A repository given as a URL or a local directory, as a base URL ending in '/'."""
    if "://" not in repo:
        repo = Path(repo).resolve().as_uri()
    return repo.rstrip("/") + "/"


# python-tuf failure -> (what it means, what to do). Order matters: subclasses first.
_TRUST_FAILURES: tuple[tuple[type[Exception], str, str | None], ...] = (
    (
        tuf_errors.ExpiredMetadataError,
        "repository metadata has expired",
        "the repository is stale or a freeze attack is under way; ask the operator to re-sign",
    ),
    (
        tuf_errors.BadVersionNumberError,
        "repository offers older metadata than this client already trusts",
        "a rollback attack or a restored old backup; do not install anything from it",
    ),
    (
        tuf_errors.UnsignedMetadataError,
        "metadata is not signed by a trusted key",
        "someone without the operator's keys produced it; if keys were rotated, the client needs the new root",
    ),
    (
        tuf_errors.LengthOrHashMismatchError,
        "downloaded bytes do not match their signed hash or length",
        "the copy in the repository is corrupt or was tampered with; re-publish it",
    ),
    (
        tuf_errors.DownloadLengthMismatchError,
        "the server sent more bytes than were signed",
        "endless-data attack or a corrupt repository; the download was stopped",
    ),
    (tuf_errors.RepositoryError, "repository metadata rejected", None),
)


@contextmanager
def tuf_failures(what: str) -> Iterator[None]:
    """Translate python-tuf's exceptions into edgeship errors that name the attack or fault."""
    try:
        yield
    except tuf_errors.DownloadHTTPError as exc:
        if exc.status_code == 404:
            raise NotFoundError(f"{what}: not found in the repository ({exc})") from exc
        raise ServerError(f"{what}: the repository answered HTTP {exc.status_code}") from exc
    except tuf_errors.SlowRetrievalError as exc:
        raise ServerError(f"{what}: the repository is too slow ({exc})",
                          hint="the agent backs off and retries; check the mirror, or raise --metadata-timeout") from exc
    except (tuf_errors.RepositoryError, tuf_errors.DownloadLengthMismatchError) as exc:
        meaning, hint = next((m, h) for kind, m, h in _TRUST_FAILURES if isinstance(exc, kind))
        raise TrustError(f"{what}: {meaning} ({exc})", hint=hint) from exc
    except tuf_errors.DownloadError as exc:
        raise ServerError(f"{what}: cannot download ({exc.__cause__ or exc})", hint="check the repository URL and the network") from exc


ROOT_FILE = "root.json"  # python-tuf's name for the trusted root in its metadata dir


def keep_root(metadata_dir: Path, data: bytes) -> bool:
    """Store ``data`` as the trusted root in ``metadata_dir`` unless one is there; True if stored.

    Trust on first use, made durable at once: a device started with the operator's root
    must not need it again, even if its first start had nothing to download. Only a root
    signed by its own keys is kept (it would be refused at the first refresh anyway).
    """
    dest = Path(metadata_dir) / ROOT_FILE
    if dest.exists():
        return False
    try:
        root = Metadata[Root].from_bytes(data)
        if not isinstance(root.signed, Root):
            raise tuf_errors.RepositoryError(f"it is {root.signed.type} metadata")
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except tuf_errors.RepositoryError as exc:
        raise TrustError(f"the given root is not a TUF root.json signed by its own keys ({exc})",
                         hint="pass the operator's repository/metadata/1.root.json") from exc
    write_atomic(dest, data)
    return True


class ReleaseVerifier:
    """Verifies releases of one repository, keeping trusted metadata in ``metadata_dir``."""

    def __init__(
        self,
        repo: str,
        metadata_dir: Path,
        trusted_root: bytes | None = None,
        fetcher: FetcherInterface | None = None,
        *,
        ca: str | None = None,
    ) -> None:
        self.url = repo_url(repo)
        self.metadata_dir = Path(metadata_dir)
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        # Trust on first use only: once a root is cached, it alone decides what comes next.
        bootstrap = None if (self.metadata_dir / ROOT_FILE).exists() else trusted_root
        if bootstrap is None and not (self.metadata_dir / ROOT_FILE).exists():
            raise TrustError(
                "no trusted root for this repository",
                hint="pass --root with the operator's root.json (e.g. <workspace>/repository/metadata/1.root.json)",
            )
        self._updater = Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=self.url + "metadata/",
            target_base_url=self.url,
            fetcher=fetcher or fetcher_for(self.url, ca=ca),
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=bootstrap,
        )
        self._refreshed = False

    def refresh(self) -> None:
        with tuf_failures("refreshing trusted metadata"):
            self._updater.refresh()
        self._refreshed = True

    def _download(self, target_path: str, dest: Path, what: str) -> Path:
        if not self._refreshed:
            self.refresh()
        with tuf_failures(what):
            info = self._updater.get_targetinfo(target_path)
            if info is None:
                raise NotFoundError(f"{what}: no signed target {target_path} in the repository")
            dest.parent.mkdir(parents=True, exist_ok=True)
            return Path(self._updater.download_target(info, str(dest)))

    def manifest(self, name: str, version: str, workdir: Path) -> Manifest:
        path = self._download(names.manifest_path(name, version), workdir / f"{name}@{version}.json", f"release {name}@{version}")
        data = path.read_bytes()
        manifest = Manifest.from_bytes(data)
        # The hash already matched what targets signed; this catches a targets entry that
        # (through operator error or key compromise) names one release's bytes as another's.
        if (manifest.name, manifest.version) != (name, version):
            raise TrustError(f"signed manifest for {name}@{version} describes {manifest.ref}", hint="do not install it")
        if hashlib.sha256(data).hexdigest() != manifest.release_id:
            raise TrustError(f"manifest of {name}@{version} is not in canonical form", hint="re-push the release")
        return manifest

    def target(self, target_path: str) -> TargetFile | None:
        """The signed length, hashes and custom fields of ``target_path``; None if unsigned."""
        if not self._refreshed:
            self.refresh()
        with tuf_failures(f"target {target_path}"):
            return self._updater.get_targetinfo(target_path)

    def release_record(self, name: str, version: str) -> dict:
        """The signed ``custom.edgeship`` record of a release (``release_id``, ``rollback_to``…)."""
        info = self.target(names.manifest_path(name, version))
        if info is None:
            raise NotFoundError(f"release {name}@{version} is not signed by the repository")
        custom = info.custom.get("edgeship", {}) if isinstance(info.custom, dict) else {}
        return dict(custom)

    def signed_blob(self, component: Component) -> TargetFile:
        """The blob target of ``component``, checked to carry the manifest's hash and size."""
        digest = Digest(component.hexdigest)
        info = self.target(names.blob_path(digest))
        if info is None or info.hashes.get("sha256") != digest.hex or info.length != component.size:
            raise TrustError(f"component {component.name} ({component.digest}) is not signed by the repository")
        return info

    def component(self, component: Component, dest: Path) -> Path:
        info = self.signed_blob(component)
        return self._download(info.path, dest, f"component {component.name}")

    def verify_release(self, name: str, version: str, workdir: Path) -> VerifiedRelease:
        """Download and check a release's manifest and every component into ``workdir``."""
        manifest = self.manifest(name, version, workdir)
        result = VerifiedRelease(manifest, manifest.release_id)
        for c in manifest.components:
            result.files[c.name] = self.component(c, workdir / "components" / c.path)
        return result


__all__ = ["ReleaseVerifier", "VerifiedRelease", "keep_root", "repo_url", "tuf_failures"]
