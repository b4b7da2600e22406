"""The operator workspace: config, offline signing keys, and the signed release repository.

    <workspace>/
      edgeship.toml                    settings (see WorkspaceConfig)
      keys/{root,targets,snapshot,timestamp}.pem   private, 0600; keys/retired/
      repository/                      what a server or a directory serves to devices
        metadata/                      TUF: N.root.json, N.targets.json, N.snapshot.json, timestamp.json
                                       (and N.bins-XX.json once the catalog is binned, see trust.bins)
        releases/<name>/<version>.json canonical manifests
        blobs/sha256/<hex>             content-addressed component files
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomli_w

from edgeship.errors import ConflictError, NotFoundError, WorkspaceError
from edgeship.release.deltas import DEFAULT_HISTORY, BuiltDelta, build_deltas, delta_pairs
from edgeship.release.manifest import Manifest, parse_version
from edgeship.store.fsutil import write_atomic
from edgeship.store.local import LocalBlobStore
from edgeship.store.undo import undo_on_failure
from edgeship.trust import bins
from edgeship.trust import keys as keyfiles
from edgeship.trust.repository import ROLES, Expiry, KeyRing, Repository
from edgeship.trust.targets import deltas_to, manifest_path, release_entries, release_targets

CONFIG_FILE = "edgeship.toml"
# How many earlier versions a release lets devices be ordered back to (newest first); more
# than one, so a rollout of a fix can still go back past a bad release in between.
ROLLBACK_HISTORY = 3
WORKSPACE_ENV = "EDGESHIP_WORKSPACE"
SIGNING_ROLES = ("targets", "snapshot", "timestamp")  # the keys a push signs with


@dataclass
class WorkspaceConfig:
    encrypted_keys: bool = False
    expiry: Expiry = field(default_factory=Expiry)
    server_url: str = ""
    server_admin_token: str = ""  # a secret: the config is written owner-only once it holds one
    server_ca: str = ""  # CA certificate pinned for the server, relative to the workspace
    bin_at: int = bins.BIN_AT  # signed files at which a push moves the flat targets role into hashed bins

    def to_toml(self) -> str:
        server = {"url": self.server_url, "admin_token": self.server_admin_token, "ca": self.server_ca}
        doc = {
            "workspace": {"format": 1},
            "keys": {"encrypted": self.encrypted_keys},
            "expiry_days": asdict(self.expiry),
            "server": {k: v for k, v in server.items() if v or k == "url"},
            "targets": {"bin_at": self.bin_at},
        }
        header = "# edgeship operator workspace. Keep keys/ private and backed up offline.\n"
        return header + tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, text: str) -> WorkspaceConfig:
        doc = tomllib.loads(text)
        return cls(
            encrypted_keys=bool(doc.get("keys", {}).get("encrypted", False)),
            expiry=Expiry(**doc.get("expiry_days", {})),
            server_url=str(doc.get("server", {}).get("url", "")),
            server_admin_token=str(doc.get("server", {}).get("admin_token", "")),
            server_ca=str(doc.get("server", {}).get("ca", "")),
            bin_at=int(doc.get("targets", {}).get("bin_at", bins.BIN_AT)),
        )


@dataclass(frozen=True)
class ReleaseRecord:
    name: str
    version: str
    release_id: str
    manifest_path: str
    manifest_size: int


class Workspace:
    def __init__(self, root: Path, config: WorkspaceConfig, passphrase: keyfiles.PassphraseSource = keyfiles.passphrase_from_env) -> None:
        self.root = root
        self.config = config
        self.keyring = KeyRing(root / "keys", passphrase)
        self.repo_dir = root / "repository"
        self.store = LocalBlobStore(self.repo_dir / "blobs")

    # -- finding and creating -------------------------------------------------------------

    @classmethod
    def find(cls, explicit: Path | None = None, passphrase: keyfiles.PassphraseSource = keyfiles.passphrase_from_env) -> Workspace:
        """The workspace named, or in $EDGESHIP_WORKSPACE, or the nearest one above the cwd."""
        if explicit is None and os.environ.get(WORKSPACE_ENV):
            explicit = Path(os.environ[WORKSPACE_ENV])
        candidates = [explicit] if explicit else [Path.cwd(), *Path.cwd().parents]
        for d in candidates:
            if (d / CONFIG_FILE).is_file():
                return cls.open(d, passphrase)
        where = str(explicit) if explicit else "this directory or any parent"
        raise WorkspaceError(f"no edgeship workspace in {where}", hint="run `edgeship init DIR`, or pass --workspace / set EDGESHIP_WORKSPACE")

    @classmethod
    def open(cls, root: Path, passphrase: keyfiles.PassphraseSource = keyfiles.passphrase_from_env) -> Workspace:
        try:
            config = WorkspaceConfig.from_toml((root / CONFIG_FILE).read_text())
        except (OSError, tomllib.TOMLDecodeError, TypeError) as exc:
            raise WorkspaceError(f"cannot read {root / CONFIG_FILE}: {exc}", hint="fix or restore the file") from exc
        return cls(root.resolve(), config, passphrase)

    @classmethod
    def init(cls, root: Path, passphrase: bytes | None, expiry: Expiry | None = None) -> Workspace:
        root = root.resolve()
        if (root / CONFIG_FILE).exists() or (root / "keys").exists():
            raise ConflictError(
                f"{root} is already an edgeship workspace",
                hint="use it as it is, or pick another directory; init never overwrites keys",
            )
        root.mkdir(parents=True, exist_ok=True)
        config = WorkspaceConfig(encrypted_keys=passphrase is not None, expiry=expiry or Expiry())
        ws = cls(root, config, passphrase=lambda _p: passphrase)
        public = {}
        for role in ROLES:
            private = keyfiles.generate()
            keyfiles.save(ws.keyring.path(role), private, passphrase)
            public[role] = keyfiles.public_key(private)
        Repository.create(ws.repo_dir, ws.keyring, public, config.expiry)
        # The config is written last: its presence marks a complete workspace.
        write_atomic(root / CONFIG_FILE, config.to_toml().encode())
        return ws

    def save_config(self) -> None:
        mode = 0o600 if self.config.server_admin_token else 0o644
        write_atomic(self.root / CONFIG_FILE, self.config.to_toml().encode(), mode=mode)

    # -- releases -------------------------------------------------------------------------

    def repository(self) -> Repository:
        return Repository(self.repo_dir, self.keyring, self.config.expiry, self.config.bin_at)

    def releases(self, name: str | None = None) -> list[ReleaseRecord]:
        """Signed releases, oldest version first per name."""
        entries = release_entries(self.repository().all_targets())
        records = [
            ReleaseRecord(e["name"], e["version"], e["release_id"], e["path"], e["length"])
            for e in entries
            if name is None or e["name"] == name
        ]
        return sorted(records, key=lambda r: (r.name, parse_version(r.version)))

    def find_release(self, name: str, version: str | None = None) -> ReleaseRecord:
        records = self.releases(name)
        if not records:
            known = sorted({r.name for r in self.releases()})
            raise NotFoundError(
                f"no release named {name!r}",
                hint=f"known releases: {', '.join(known)}" if known else "push one with `edgeship release push`",
            )
        if version is None:
            return records[-1]
        for r in records:
            if r.version == version:
                return r
        raise NotFoundError(f"{name} has no version {version}", hint=f"versions: {', '.join(r.version for r in records)}")

    def load_manifest(self, record: ReleaseRecord) -> Manifest:
        return Manifest.from_bytes((self.repo_dir / record.manifest_path).read_bytes())

    def deltas_to(self, manifest: Manifest) -> list[dict]:
        """Signed deltas that rebuild this release's components, with the download each saves."""
        return deltas_to(self.repository().all_targets(), manifest)

    def not_newer(self, name: str, version: str) -> str | None:
        """The latest version of ``name`` when ``version`` is not newer than it (releases only move forward)."""
        existing = self.releases(name)
        if existing and parse_version(version) <= parse_version(existing[-1].version):
            return existing[-1].version
        return None

    def check_publishable(self, name: str, version: str) -> None:
        """Fail before anything is written: the version must be newer than the last one of
        ``name``, and the keys that sign a release must unlock."""
        latest = self.not_newer(name, version)
        if latest is not None:
            raise ConflictError(
                f"{name}@{version} is not newer than the latest {latest}",
                hint="releases only move forward; bump the version (rolling back is `edgeship rollout` business)",
            )
        for role in SIGNING_ROLES:
            self.keyring.signer(role)

    def unchanged_on_failure(self) -> contextlib.AbstractContextManager[None]:
        """Undo a failed push: what it added is removed, the timestamp it re-signed is restored."""
        metadata = self.repo_dir / "metadata"
        return undo_on_failure(self.root, [metadata / "timestamp.json", metadata / "root.json"])

    def publish(
        self,
        manifest: Manifest,
        *,
        delta_history: int = DEFAULT_HISTORY,
        on_delta: Callable[[BuiltDelta], None] | None = None,
    ) -> str:
        """Sign a built release, and deltas from the last ``delta_history`` releases, into the repository."""
        self.check_publishable(manifest.name, manifest.version)
        existing = self.releases(manifest.name)
        data = manifest.canonical_bytes()
        write_atomic(self.repo_dir / manifest_path(manifest.name, manifest.version), data)
        previous = existing[-1].version if existing else None
        history = [self.load_manifest(r) for r in reversed(existing[-delta_history:])] if delta_history > 0 else []
        _, delta_files = build_deltas(delta_pairs(manifest, history), self.store, self.repo_dir, on_delta)
        allowed = [r.version for r in reversed(existing[-ROLLBACK_HISTORY:])]
        targets = release_targets(manifest, data, rollback_to=previous, rollback_allowed=allowed)
        self.repository().add_targets([*targets, *delta_files])
        return manifest.release_id
