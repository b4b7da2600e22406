"""Ways to tamper with a repository, as an attacker (or a failing disk) would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgeship.trust import keys as keyfiles
from edgeship.trust.repository import KeyRing, Repository
from edgeship.workspace import Workspace


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)  # stored blobs are read-only; an attacker with disk access does not care
    return path


def blob_file(ws: Workspace, component_index: int = 0, ref: tuple[str, str] = ("llm", "1.0.0")) -> Path:
    manifest = ws.load_manifest(ws.find_release(*ref))
    return writable(ws.store.path(_digest(manifest.components[component_index].hexdigest)))


def _digest(hexdigest: str):  # noqa: ANN202
    from edgeship.store.digest import Digest

    return Digest(hexdigest)


def forged_repository(ws: Workspace, tmp: Path, *, targets_key: Path | None = None) -> Repository:
    """The real repository, but signing targets with another key and snapshot/timestamp with the real online keys.

    That is what a compromised update server could do: it holds the online keys only.
    """
    ring_dir = tmp / "forged-keys"
    ring_dir.mkdir(parents=True, exist_ok=True)
    for role in ("snapshot", "timestamp"):
        shutil.copy(ws.keyring.path(role), ring_dir / f"{role}.pem")
    if targets_key is not None:
        shutil.copy(targets_key, ring_dir / "targets.pem")
    else:
        keyfiles.save(ring_dir / "targets.pem", keyfiles.generate(), None)
    return Repository(ws.repo_dir, KeyRing(ring_dir), ws.config.expiry)
