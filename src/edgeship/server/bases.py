"""Adapter releases on the server: refuse to assign adapters to devices without their base model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgeship.errors import NotFoundError
from edgeship.release.manifest import Manifest, require_bases
from edgeship.server.models import Device
from edgeship.server.repository import ServerRepository
from edgeship.server.storage import BlobStorage


def release_manifest(storage: BlobStorage, entry: Mapping[str, Any]) -> Manifest:
    """The signed manifest of a published release (``entry`` from the repository's release list)."""
    try:
        raw = storage.read(entry["path"])
    except NotFoundError as exc:
        raise NotFoundError(f"the manifest of {entry['name']}@{entry['version']} is missing from storage",
                            hint="push the release again") from exc
    return Manifest.from_bytes(raw)


def check_bases(storage: BlobStorage, repo: ServerRepository, manifest: Manifest, devices: Iterable[Device]) -> None:
    """MissingBaseError unless every device has the base models ``manifest``'s adapters need.

    A device has what its current and previous releases (as it last reported them) carry:
    those are the files its agent keeps.
    """
    if not manifest.adapter_bases():
        return
    by_id = {e["release_id"]: e for e in repo.releases()}
    for device in devices:
        installed: set[str] = set()
        for held in (device.current, device.previous):
            entry = by_id.get((held or {}).get("release_id"))
            if entry is not None:
                installed.update(c.digest for c in release_manifest(storage, entry).components)
        require_bases(manifest, installed.__contains__, f"device {device.id}")
