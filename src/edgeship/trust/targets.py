"""How releases and blobs are named as TUF targets.

Blobs are content-addressed and manifests are immutable once signed, so target paths
need no hash prefix: clients fetch them with ``prefix_targets_with_hash=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuf.api.metadata import TargetFile

from edgeship.release.manifest import Manifest
from edgeship.store.digest import Digest

RELEASES_DIR = "releases"
BLOBS_DIR = "blobs"
DELTAS_DIR = "deltas"


def manifest_path(name: str, version: str) -> str:
    return f"{RELEASES_DIR}/{name}/{version}.json"


def blob_path(digest: Digest) -> str:
    return f"{BLOBS_DIR}/sha256/{digest.hex}"


def delta_path(old_hex: str, new_hex: str) -> str:
    """The patch that rebuilds blob ``new_hex`` from blob ``old_hex``."""
    return f"{DELTAS_DIR}/sha256/{old_hex}/{new_hex}"


def release_targets(
    manifest: Manifest, manifest_bytes: bytes, rollback_to: str | None = None, rollback_allowed: Sequence[str] = ()
) -> list[TargetFile]:
    """The targets that sign one release: its manifest and every component blob.

    ``rollback_to`` is the version devices go back to from this one by default, and
    ``rollback_allowed`` every version they may be ordered back to (it includes
    ``rollback_to``). Signing them now, offline, lets the online server order such a
    rollback later without the targets key; any other downgrade is refused by the device.
    """
    allowed = list(dict.fromkeys([*([rollback_to] if rollback_to else []), *rollback_allowed]))
    files = [
        TargetFile.from_data(
            manifest_path(manifest.name, manifest.version),
            manifest_bytes,
            ["sha256"],
        )
    ]
    files[0].unrecognized_fields["custom"] = {
        "edgeship": {
            "kind": "release",
            "name": manifest.name,
            "version": manifest.version,
            "release_id": manifest.release_id,
            "rollback_to": rollback_to,
            "rollback_allowed": allowed,
        }
    }
    for c in manifest.components:
        files.append(
            TargetFile(c.size, {"sha256": c.hexdigest}, blob_path(Digest(c.hexdigest)), {"custom": {"edgeship": {"kind": "blob"}}})
        )
    return files


def delta_target(old_hex: str, new_hex: str, patch_hex: str, patch_size: int, info: dict) -> TargetFile:
    custom = {"edgeship": {"kind": "delta", "from": f"sha256:{old_hex}", "to": f"sha256:{new_hex}", **info}}
    return TargetFile(patch_size, {"sha256": patch_hex}, delta_path(old_hex, new_hex), {"custom": custom})


def target_entries(targets: dict[str, TargetFile], kind: str) -> list[dict]:
    """The edgeship records of one kind ("release", "blob", "delta") among a targets role's files."""
    out = []
    for path, tf in targets.items():
        info = tf.custom.get("edgeship", {}) if isinstance(tf.custom, dict) else {}
        if info.get("kind") == kind:
            out.append({**info, "path": path, "length": tf.length})
    return out


def deltas_to(targets: dict[str, TargetFile], manifest: Manifest) -> list[dict]:
    """Signed deltas among ``targets`` that rebuild ``manifest``'s components, with the download each saves."""
    names = {c.digest: c.name for c in manifest.components}
    rows = []
    for e in target_entries(targets, "delta"):
        if e.get("to") in names:
            full = e.get("target_size") or 0
            rows.append(
                {
                    "component": names[e["to"]],
                    "from_version": e.get("from_version"),
                    "length": e["length"],
                    "target_size": full,
                    "saving": 1 - e["length"] / full if full else 0.0,
                    "path": e["path"],
                }
            )
    return sorted(rows, key=lambda r: (r["component"], r["path"]))


def release_entries(targets: dict[str, TargetFile]) -> list[dict]:
    return target_entries(targets, "release")


def rollback_versions(record: dict) -> list[str]:
    """The versions a release's signed record lets devices be ordered back to."""
    allowed = record.get("rollback_allowed")
    if allowed is None:  # releases signed before the list existed
        allowed = [record["rollback_to"]] if record.get("rollback_to") else []
    return list(allowed)
