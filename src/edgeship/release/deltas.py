"""The deltas a release is published with, so devices download only what changed.

Deltas are built and signed at push time, in the operator workspace: they are TUF
targets, and only the workspace holds the targets key. Each changed component gets a
patch from its namesake in each of the last ``history`` releases of the same name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from edgeship.errors import StoreError
from edgeship.release.manifest import Component, Manifest
from edgeship.store.digest import Digest, hash_file
from edgeship.store.local import LocalBlobStore
from edgeship.trust.targets import delta_path, delta_target

DEFAULT_HISTORY = 3
# A patch that saves less than this share of the download is not worth a second code path.
MIN_SAVING = 0.10


@dataclass(frozen=True)
class DeltaPair:
    old: Component
    new: Component
    from_version: str


@dataclass(frozen=True)
class BuiltDelta:
    pair: DeltaPair
    size: int
    kept: bool
    encoder: str

    @property
    def saving(self) -> float:
        return 1 - self.size / self.pair.new.size if self.pair.new.size else 0.0


def predecessors(new: Manifest, old: Manifest) -> dict[str, Component]:
    """Each new component's earlier version: the old component of the same name, else the only
    old one of its kind when the new release also has only one (file names change between builds)."""
    old_by_name = {c.name: c for c in old.components}
    out = {}
    for c in new.components:
        match = old_by_name.get(c.name)
        if match is None:
            same_kind_new = [n for n in new.components if n.kind == c.kind]
            same_kind_old = [o for o in old.components if o.kind == c.kind]
            if len(same_kind_new) == len(same_kind_old) == 1:
                match = same_kind_old[0]
        if match is not None and match.kind == c.kind:
            out[c.name] = match
    return out


def delta_pairs(new: Manifest, history: Sequence[Manifest]) -> list[DeltaPair]:
    """Which patches to build: changed components against their predecessors, newest history first."""
    pairs: list[DeltaPair] = []
    seen: set[tuple[str, str]] = set()
    for old_release in history:
        before = predecessors(new, old_release)
        for c in new.components:
            old = before.get(c.name)
            if old is None or old.digest == c.digest or (old.digest, c.digest) in seen:
                continue
            seen.add((old.digest, c.digest))
            pairs.append(DeltaPair(old, c, old_release.version))
    return pairs


def build_deltas(
    pairs: Sequence[DeltaPair],
    store: LocalBlobStore,
    repo_dir: Path,
    on_delta: Callable[[BuiltDelta], None] | None = None,
) -> tuple[list[BuiltDelta], list[TargetFile]]:
    """Write each worthwhile patch under ``repo_dir/deltas/`` and return the targets naming them."""
    from edgeship.delta import make_patch  # the codecs are only needed when publishing

    built, targets = [], []
    for pair in pairs:
        old_hex, new_hex = pair.old.hexdigest, pair.new.hexdigest
        dest = repo_dir / delta_path(old_hex, new_hex)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
        except OSError as exc:
            raise StoreError(f"cannot write deltas under {dest.parent}: {exc.strerror}", hint="check free disk space and permissions") from exc
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            stats = make_patch(store.path(Digest(old_hex)), store.path(Digest(new_hex)), tmp)
            size = tmp.stat().st_size
            kept = size <= (1 - MIN_SAVING) * pair.new.size
            if kept:
                os.replace(tmp, dest)
                digest, _ = hash_file(dest)
                info = {"encoder": stats.encoder, "from_version": pair.from_version, "target_size": pair.new.size}
                targets.append(delta_target(old_hex, new_hex, digest.hex, size, info))
        finally:
            tmp.unlink(missing_ok=True)
        result = BuiltDelta(pair, size, kept, stats.encoder)
        built.append(result)
        if on_delta:
            on_delta(result)
    return built, targets
