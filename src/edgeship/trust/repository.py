"""The operator's TUF repository: signs and writes root, targets, snapshot and timestamp.

Files live under ``<repo>/metadata/`` with consistent snapshots (``N.root.json``,
``N.targets.json``, ``N.snapshot.json``, ``timestamp.json``, and for a binned catalog
``N.bins-XX.json``, see ``trust.bins``); targets live under ``<repo>/`` at their target path.
New versioned files are written first and ``timestamp.json`` last, so a client never sees a
half-published repository.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from edgeship.errors import TrustError, UsageError
from edgeship.store.fsutil import write_atomic
from edgeship.trust import bins
from edgeship.trust import keys as keyfiles

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("snapshot", "timestamp")  # the only keys an update server may hold
_VERSIONED = re.compile(r"^(\d+)\.([a-z]+(?:-[0-9a-f]+)?)\.json$")


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after signing, in days."""

    root: float = 365.0
    targets: float = 90.0
    snapshot: float = 7.0
    timestamp: float = 1.0

    def of(self, role: str) -> timedelta:
        return timedelta(days=getattr(self, role))


@dataclass(frozen=True)
class VerifiedTargets:
    """Targets (and the new root versions before them) that passed every check, not yet written."""

    roots: tuple[Metadata[Root], ...]
    targets: Metadata[Targets]
    raw: bytes  # the targets exactly as signed
    bins: tuple[tuple[str, int, bytes], ...] = ()  # (bin, version, bytes as signed) of the bins that changed


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class KeyRing:
    """Private keys by role, loaded on first use (so an encrypted key is unlocked only when needed)."""

    def __init__(self, directory: Path, passphrase: keyfiles.PassphraseSource = keyfiles.passphrase_from_env) -> None:
        self.directory = directory
        self._passphrase = passphrase
        self._signers: dict[str, Signer] = {}

    def path(self, role: str) -> Path:
        return self.directory / f"{role}.pem"

    def has(self, role: str) -> bool:
        return self.path(role).is_file()

    def private_key(self, role: str) -> Ed25519PrivateKey:
        """The role's private key itself (to hand an online key to a server); unlocks it if needed."""
        return keyfiles.load(self.path(role), self._passphrase)

    def signer(self, role: str) -> Signer:
        if role not in self._signers:
            if not self.has(role):
                raise TrustError(
                    f"the {role} key is not in {self.directory}",
                    hint=f"sign {role} metadata where its key lives (the operator workspace holds root and targets)",
                )
            self._signers[role] = keyfiles.signer(keyfiles.load(self.path(role), self._passphrase))
        return self._signers[role]

    def stage(self, role: str, private: Ed25519PrivateKey, passphrase: bytes | None) -> None:
        """Save a new key beside the current one, before any metadata names it."""
        keyfiles.save(self.path(role).with_suffix(".pem.new"), private, passphrase)

    def commit(self, role: str) -> Path:
        """Make the staged key current; the old file moves to ``retired/``. Returns the retired path."""
        current = self.path(role)
        retired = self.directory / "retired" / f"{role}-{_now():%Y%m%dT%H%M%SZ}.pem"
        retired.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if current.exists():
            current.replace(retired)
        current.with_suffix(".pem.new").replace(current)
        self._signers.pop(role, None)
        return retired


class Repository:
    """Reads and signs the metadata of one TUF repository directory."""

    def __init__(self, path: Path, keyring: KeyRing, expiry: Expiry | None = None, bin_at: int = bins.BIN_AT) -> None:
        self.path = Path(path)
        self.metadata_dir = self.path / "metadata"
        self.keyring = keyring
        self.expiry = expiry or Expiry()
        self.bin_at = bin_at  # files in a flat targets role that make the next push move them into bins

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, keyring: KeyRing, public_keys: dict[str, keyfiles.SSlibKey], expiry: Expiry | None = None
    ) -> Repository:
        repo = cls(path, keyring, expiry)
        repo.metadata_dir.mkdir(parents=True, exist_ok=True)
        root = Root(expires=_now() + repo.expiry.of("root"), consistent_snapshot=True)
        for role in ROLES:
            root.add_key(public_keys[role], role)
        repo._write_root(Metadata(root), [keyring.signer("root")])
        targets = Metadata(Targets(expires=_now() + repo.expiry.of("targets")))
        repo._sign_and_write(targets, "targets")
        repo._publish_snapshot()
        return repo

    # -- reading --------------------------------------------------------------------------

    def _latest(self, role: str) -> int:
        versions = [int(m.group(1)) for p in self.metadata_dir.glob(f"*.{role}.json") if (m := _VERSIONED.match(p.name))]
        if not versions:
            raise TrustError(f"no {role} metadata in {self.metadata_dir}", hint="is this an edgeship repository? run `edgeship init`")
        return max(versions)

    def latest_versions(self) -> dict[str, int]:
        """Newest version of every versioned role, from one directory listing (a catalog has hundreds of bins)."""
        out: dict[str, int] = {}
        for p in self.metadata_dir.glob("*.json"):
            if m := _VERSIONED.match(p.name):
                out[m.group(2)] = max(out.get(m.group(2), 0), int(m.group(1)))
        return out

    def load(self, role: str, version: int | None = None) -> Metadata:
        if version is None and role != "timestamp":
            version = self._latest(role)
        name = "timestamp.json" if role == "timestamp" else f"{version}.{role}.json"
        if not (self.metadata_dir / name).is_file():
            raise TrustError(f"no {role} metadata in {self.metadata_dir}", hint="is this an edgeship repository? run `edgeship init`")
        try:
            return Metadata.from_file(str(self.metadata_dir / name))
        except (OSError, ValueError) as exc:
            raise TrustError(f"cannot read {role} metadata {name}: {exc}") from exc

    def root(self) -> Metadata[Root]:
        return self.load("root")

    def targets(self) -> Metadata[Targets]:
        return self.load("targets")

    def bins(self) -> dict[str, Metadata[Targets]]:
        """The newest signed version of every bin the targets delegate to (none when flat)."""
        roles = bins.succinct(self.targets().signed)
        if roles is None:
            return {}
        latest = self.latest_versions()
        return {name: self.load(name, latest[name]) for name in roles.get_roles()}

    def all_targets(self) -> dict[str, TargetFile]:
        """Every signed file, from the top-level targets and every bin."""
        files = dict(self.targets().signed.targets)
        for md in self.bins().values():
            files.update(md.signed.targets)
        return files

    def root_bytes(self, version: int = 1) -> bytes:
        return (self.metadata_dir / f"{version}.root.json").read_bytes()

    def signature_status(self, role: str) -> str:
        """'valid until <time>', 'EXPIRED at <time>' or 'INVALID: <why>' for one role."""
        root = self.root()
        md = self.load(role)
        try:
            root.verify_delegate(role, md)
        except UnsignedMetadataError as exc:
            return f"INVALID: {exc}"
        expires = md.signed.expires
        if md.signed.is_expired(_now()):
            return f"EXPIRED at {expires:%Y-%m-%d %H:%M}Z"
        return f"valid until {expires:%Y-%m-%d %H:%M}Z"

    # -- publishing -----------------------------------------------------------------------

    def add_targets(self, files: Iterable[TargetFile]) -> int:
        """Sign a new targets version naming ``files`` (on top of the existing ones); returns it.

        A flat targets role that would reach ``bin_at`` files is moved into bins first; in a
        binned repository only the bins that gain files are re-signed, unless the targets key
        changed, when every bin is (their delegation names the new key).
        """
        targets = self.targets()
        files = list(files)
        roles = bins.succinct(targets.signed)
        every = False  # sign every bin, not only those gaining files
        if roles is None and len(targets.signed.targets) + len(files) >= self.bin_at:
            files = [*targets.signed.targets.values(), *files]
            targets.signed.targets.clear()
            roles, every = self._delegate(targets), True
        elif roles is not None and self._targets_key().keyid not in roles.keyids:
            roles, every = self._delegate(targets), True  # the targets key was rotated
        if roles is None:
            for f in files:
                targets.signed.targets[f.path] = f
        else:
            self._sign_bins(roles, files, every)
        targets.signed.version += 1
        self._sign_and_write(targets, "targets")
        self._publish_snapshot()
        return targets.signed.version

    def _targets_key(self) -> keyfiles.SSlibKey:
        root = self.root().signed
        return root.get_key(root.roles["targets"].keyids[0])  # type: ignore[return-value]

    def _delegate(self, targets: Metadata[Targets]) -> SuccinctRoles:
        """Point ``targets`` at bins signed by the current targets key."""
        targets.signed.delegations = bins.delegation(self._targets_key())
        return targets.signed.delegations.succinct_roles  # type: ignore[union-attr,return-value]

    def _sign_bins(self, roles: SuccinctRoles, files: list[TargetFile], every: bool) -> None:
        latest = self.latest_versions()
        groups = bins.sort_into(roles, files)
        for name in roles.get_roles() if every else groups:
            if name in latest:
                md = self.load(name, latest[name])
                md.signed.version += 1
            else:
                md = Metadata(Targets(version=1))
            for f in groups.get(name, ()):
                md.signed.targets[f.path] = f
            self._sign_and_write(md, name, key_role="targets")

    def accept_targets(self, targets_bytes: bytes, new_roots: Iterable[bytes] = (), new_bins: dict[str, bytes] | None = None) -> int:
        """Publish targets signed elsewhere (the server's side of ``release push --server``).

        ``verify_targets`` then ``write_targets``; returns the new targets version.
        """
        return self.write_targets(self.verify_targets(targets_bytes, new_roots, new_bins))

    def verify_targets(self, targets_bytes: bytes, new_roots: Iterable[bytes] = (), new_bins: dict[str, bytes] | None = None) -> VerifiedTargets:
        """Check targets (and the bins they delegate to) signed elsewhere, writing nothing.

        New root versions are checked like a client would (each signed by the previous root's
        keys and by its own), then the targets against the newest root and the current version,
        then each bin against the targets' delegation.
        """
        trusted = self.root()
        roots: list[Metadata[Root]] = []
        for raw in sorted((self._parse(r, Root, "root") for r in new_roots), key=lambda md: md.signed.version):
            if raw.signed.version <= trusted.signed.version:
                continue  # already trusted: re-sending the whole root chain is harmless
            if raw.signed.version != trusted.signed.version + 1:
                raise TrustError(
                    f"root version {raw.signed.version} does not follow trusted version {trusted.signed.version}",
                    hint="send every root version after the one the server has",
                )
            try:
                trusted.verify_delegate("root", raw)
                raw.verify_delegate("root", raw)
            except UnsignedMetadataError as exc:
                raise TrustError(f"root version {raw.signed.version} is not signed by the trusted root keys: {exc}") from exc
            roots.append(raw)
            trusted = raw
        targets = self._parse(targets_bytes, Targets, "targets")
        try:
            trusted.verify_delegate("targets", targets)
        except UnsignedMetadataError as exc:
            raise TrustError(
                f"targets version {targets.signed.version} is not signed by the trusted targets key: {exc}",
                hint="sign it in the operator workspace whose root this repository trusts",
            ) from exc
        current = self._latest("targets")
        if targets.signed.version <= current:
            raise TrustError(
                f"targets version {targets.signed.version} is not newer than the published version {current}",
                hint="push from the workspace that signed the published targets (or pull its latest metadata first)",
            )
        if targets.signed.is_expired(_now()):
            raise TrustError(f"targets version {targets.signed.version} has expired", hint="re-sign it in the operator workspace")
        return VerifiedTargets(tuple(roots), targets, targets_bytes, self._verify_bins(targets, new_bins or {}))

    def _verify_bins(self, targets: Metadata[Targets], new_bins: dict[str, bytes]) -> tuple[tuple[str, int, bytes], ...]:
        roles = bins.succinct(targets.signed)
        if roles is None:
            if new_bins:
                raise TrustError("bins were sent with targets that delegate to none", hint="push the bins with the targets that name them")
            return ()
        latest = self.latest_versions()
        out = []
        for name, raw in sorted(new_bins.items()):
            if not roles.is_delegated_role(name):
                raise TrustError(f"{name} is not a bin the targets delegate to", hint="push the metadata exactly as the workspace signed it")
            md = self._parse(raw, Targets, name)
            try:
                targets.verify_delegate(name, md)
            except UnsignedMetadataError as exc:
                raise TrustError(f"bin {name} version {md.signed.version} is not signed by the key the targets delegate to: {exc}",
                                 hint="sign bins in the operator workspace; the server never can") from exc
            if md.signed.version <= latest.get(name, 0):
                raise TrustError(f"bin {name} version {md.signed.version} is not newer than the published version {latest[name]}",
                                 hint="push from the workspace that signed the published metadata")
            if md.signed.is_expired(_now()):
                raise TrustError(f"bin {name} version {md.signed.version} has expired", hint="re-sign it in the operator workspace")
            out.append((name, md.signed.version, raw))
        missing = [n for n in roles.get_roles() if n not in new_bins and n not in latest]
        if missing:
            raise TrustError(f"the targets delegate to {len(missing)} bin(s) never sent, e.g. {missing[0]}",
                             hint="push every bin the workspace signed (`edgeship release push --server` does)")
        return tuple(out)

    def write_targets(self, verified: VerifiedTargets) -> int:
        """Write what ``verify_targets`` accepted, then sign snapshot and timestamp with this
        keyring's (online) keys. Returns the new targets version."""
        for md in verified.roots:
            self._write_root(md, [])
        for name, bin_version, raw in verified.bins:
            self._store(f"{bin_version}.{name}.json", raw)
        version = verified.targets.signed.version
        self._store(f"{version}.targets.json", verified.raw)
        self._publish_snapshot()
        return version

    @staticmethod
    def _parse(raw: bytes, kind: type, role: str) -> Metadata:
        try:
            md = Metadata.from_bytes(raw)
        except DeserializationError as exc:
            raise TrustError(f"{role} metadata cannot be parsed: {exc}", hint=f"send the {role}.json file exactly as signed") from exc
        if not isinstance(md.signed, kind):
            raise TrustError(f"expected {role} metadata, got {md.signed.type}")
        return md

    def refresh_timestamp(self) -> None:
        """Re-sign the timestamp with a fresh expiry (the online job against freeze attacks)."""
        snapshot_name = f"{self._latest('snapshot')}.snapshot.json"
        self._publish_timestamp(self.load("snapshot").signed.version, (self.metadata_dir / snapshot_name).read_bytes())

    def _publish_snapshot(self) -> None:
        try:
            snapshot = self.load("snapshot")
            snapshot.signed.version += 1
        except TrustError:  # first publication
            snapshot = Metadata(Snapshot())
        latest = self.latest_versions()
        targets_version = latest["targets"]
        data = (self.metadata_dir / f"{targets_version}.targets.json").read_bytes()
        snapshot.signed.meta["targets.json"] = MetaFile.from_data(targets_version, data, ["sha256"])
        roles = bins.succinct(Metadata[Targets].from_bytes(data).signed)
        for name in roles.get_roles() if roles else ():
            # Version only, no hash: it keeps the snapshot small, and consistent snapshots
            # name each bin version's file, which the delegation's signature then checks.
            snapshot.signed.meta[f"{name}.json"] = MetaFile(latest[name])
        raw = self._sign_and_write(snapshot, "snapshot")
        self._publish_timestamp(snapshot.signed.version, raw)

    def _publish_timestamp(self, snapshot_version: int, snapshot_bytes: bytes) -> None:
        try:
            timestamp = self.load("timestamp")
            timestamp.signed.version += 1
        except TrustError:
            timestamp = Metadata(Timestamp())
        timestamp.signed.snapshot_meta = MetaFile.from_data(snapshot_version, snapshot_bytes, ["sha256"])
        self._sign_and_write(timestamp, "timestamp")

    def _sign_and_write(self, md: Metadata, role: str, *, expires: datetime | None = None, key_role: str | None = None) -> bytes:
        """Sign ``md`` as ``role`` with ``key_role``'s key (a bin is signed by the targets key)."""
        key_role = key_role or role
        md.signed.expires = expires or (_now() + self.expiry.of(key_role))
        md.signatures.clear()
        md.sign(self.keyring.signer(key_role))
        raw = md.to_bytes(JSONSerializer(compact=False))
        self._store("timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json", raw)
        return raw

    def _write_root(self, md: Metadata[Root], signers: list[Signer]) -> None:
        """Sign and write a root version; with no signers, ``md`` is written as it was signed."""
        if signers:
            md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        raw = md.to_bytes(JSONSerializer(compact=False))
        self._store(f"{md.signed.version}.root.json", raw)
        self._store("root.json", raw)

    def _store(self, name: str, raw: bytes) -> None:
        """Every metadata write goes through here (the server also records it in its database)."""
        write_atomic(self.metadata_dir / name, raw)

    def resign_expiring(self, role: str, expires: datetime) -> None:
        """Re-sign one role with an explicit expiry (tests use it to stage a freeze attack)."""
        md = self.load(role)
        md.signed.version += 1
        self._sign_and_write(md, role, expires=expires)
        if role == "targets":
            self._publish_snapshot()
        elif role == "snapshot":
            self.refresh_timestamp()

    # -- key rotation ---------------------------------------------------------------------

    def rotate(self, role: str, passphrase: bytes | None, new_key: Callable[[], Ed25519PrivateKey] = keyfiles.generate) -> str:
        """Replace ``role``'s key: new root version signed by old and new root keys. Returns the new key ID."""
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}", hint=f"choose one of {', '.join(ROLES)}")
        root = self.root()
        old_root_signer = self.keyring.signer("root")
        private = new_key()
        public = keyfiles.public_key(private)
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(public, role)
        root.signed.version += 1
        root.signed.expires = _now() + self.expiry.of("root")
        new_signers: list[Signer] = [keyfiles.signer(private)] if role == "root" else [old_root_signer]
        # A client that trusts root N accepts N+1 only if N's root keys signed it too.
        if role == "root":
            new_signers.append(old_root_signer)
        # Stage the key first: losing it after the new root names it would orphan the role.
        self.keyring.stage(role, private, passphrase)
        self._write_root(root, new_signers)
        self.keyring.commit(role)
        # Metadata signed by the retired key no longer verifies: re-sign it with the new one.
        if role == "targets":
            self.add_targets([])
        elif role == "snapshot":
            self._publish_snapshot()
        elif role == "timestamp":
            self.refresh_timestamp()
        return public.keyid


__all__ = ["Expiry", "KeyRing", "ONLINE_ROLES", "ROLES", "Repository", "VerifiedTargets"]
