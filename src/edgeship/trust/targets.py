"""How releases and blobs are named as TUF targets.

Blobs are content-addressed and manifests are immutable once signed, so target paths
need no hash prefix: clients fetch them with ``prefix_targets_with_hash=False``.
"""

from __future__ import annotations

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


def release_targets(manifest: Manifest, manifest_bytes: bytes, rollback_to: str | None = None) -> list[TargetFile]:
    """The targets that sign one release: its manifest and every component blob.

    ``rollback_to`` is the version devices may go back to from this one. Signing it now,
    offline, lets the online server order that rollback later without the targets key;
    any other downgrade is refused by the device.
    """
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


def release_entries(targets: dict[str, TargetFile]) -> list[dict]:
    return target_entries(targets, "release")
