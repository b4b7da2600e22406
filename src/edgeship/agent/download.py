"""Fetch the component files a release needs and the device lacks: by delta when one is signed.

For each component not already in the blob store:
1. a partial download of the whole file exists → resume it (never mix two ways of getting a file);
2. the running release has a component of the same name, and the repository signs a delta
   ``deltas/sha256/<old>/<new>`` (docs/protocol.md) → download the patch, check it against
   its signed length and hash, and rebuild the new file from the old blob; the result must
   hash to the signed digest (the applier checks; the verifying step checks again);
3. otherwise, or if the delta is unusable for any reason but the network → the whole file.

Everything lands in ``store/partial/<hex>``; the verifying step adopts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from tuf.api.exceptions import LengthOrHashMismatchError

from edgeship.agent.fetcher import Fetched, ResumableFetcher
from edgeship.agent.store import DeviceStore
from edgeship.errors import DeltaError, StoreError, ValidationError
from edgeship.release.deltas import predecessors
from edgeship.release.manifest import Component, Manifest
from edgeship.store.digest import Digest
from edgeship.store.fsutil import free_space, room_shortfall
from edgeship.trust.client import ReleaseVerifier
from edgeship.trust.targets import delta_path

log = logging.getLogger("edgeship.agent")


@dataclass
class DownloadReport:
    """What a release cost to fetch: reported as a `download` event, so savings show per device."""

    full_size: int = 0  # bytes of the components the device lacked
    fetched: int = 0  # bytes of patches or whole files that came over the network in this attempt
    resumed: int = 0  # bytes of them that earlier attempts had left in partial files
    by_delta: list[str] = field(default_factory=list)

    @property
    def downloaded(self) -> int:
        """Bytes of the patches and whole files, however many attempts they took."""
        return self.fetched + self.resumed

    def add(self, got: Fetched) -> None:
        self.fetched += got.fetched
        self.resumed += got.resumed

    def to_dict(self) -> dict[str, object]:
        return {"full_size": self.full_size, "bytes_downloaded": self.downloaded, "bytes_fetched": self.fetched,
                "bytes_resumed": self.resumed, "by_delta": self.by_delta}


@dataclass
class Downloader:
    verifier: ReleaseVerifier
    fetcher: ResumableFetcher
    store: DeviceStore
    progress: Callable[[int, int], None]  # (bytes done, bytes in total) for the status file
    keep_free: int = 0  # bytes the file system must keep free after the download

    def fetch_missing(self, manifest: Manifest, running: Manifest | None) -> DownloadReport:
        self.check_room(manifest)
        old_by_name = predecessors(manifest, running) if running else {}
        total = sum(c.size for c in manifest.components)
        report = DownloadReport()
        done = 0
        for c in manifest.components:
            digest = Digest(c.hexdigest)
            if not self.store.blobs.has(digest):  # an unchanged component costs nothing
                report.full_size += c.size
                old = old_by_name.get(c.name)
                resuming = self.store.partial(digest).exists()
                patch = None
                if not resuming and old is not None:
                    patch = self._by_delta(c, old, lambda n, base=done: self.progress(base + n, total))
                if patch is None:
                    info = self.verifier.signed_blob(c)
                    report.add(self.fetcher.download_to(self.verifier.url + info.path, self.store.partial(digest), info.length,
                                                        progress=lambda n, base=done: self.progress(base + n, total)))
                else:
                    report.add(patch)
                    report.by_delta.append(c.name)
            done += c.size
            self.progress(done, total)
        return report

    def check_room(self, manifest: Manifest) -> None:
        """Refuse to start unless the disk holds what the job still needs plus ``keep_free``.

        A full disk found mid-file costs a failed write and a partial the agent must keep;
        found up front it costs one line. (A delta needs less than its whole file: the
        whole file is the bound.)
        """
        need = 0
        for c in manifest.components:
            digest = Digest(c.hexdigest)
            if not self.store.blobs.has(digest):
                partial = self.store.partial(digest)
                need += c.size - min(c.size, partial.stat().st_size if partial.exists() else 0)
        self.store.partial_dir.mkdir(parents=True, exist_ok=True)
        short = room_shortfall(need, free_space(self.store.partial_dir), self.keep_free)
        if short:
            raise StoreError(
                f"not enough disk space for {manifest.ref}: the download still {short}",
                hint="free disk space (old files, logs) or lower --keep-free; the running release is untouched "
                "and the download resumes when there is room",
            )

    def _by_delta(self, new: Component, old: Component, progress: Callable[[int], None]) -> Fetched | None:
        """Rebuild ``new`` from ``old`` with a signed delta; what its patch cost, or None if there is none or it is unusable."""
        old_blob = self.store.blobs.path(Digest(old.hexdigest))
        if old.kind != new.kind or not old_blob.is_file():
            return None
        info = self.verifier.target(delta_path(old.hexdigest, new.hexdigest))
        if info is None:
            return None
        patch = self.store.partial_dir / f"{new.hexdigest}.delta-from-{old.hexdigest[:16]}"
        try:
            # A network failure propagates (the step fails and is retried, resuming the
            # patch); anything wrong with the patch itself means: take the whole file.
            got = self.fetcher.download_to(self.verifier.url + info.path, patch, info.length, progress=progress)
            with open(patch, "rb") as f:
                info.verify_length_and_hashes(f)
            from edgeship.delta import apply_patch  # only now: the delta codecs are not small

            apply_patch(old_blob, patch, self.store.partial(Digest(new.hexdigest)), expected_digest=new.digest)
        except (LengthOrHashMismatchError, DeltaError, ValidationError) as exc:
            log.warning("the delta for %s is unusable (%s); fetching the whole file", new.name, exc)
            patch.unlink(missing_ok=True)
            return None
        patch.unlink()
        log.info("%s rebuilt from a %d-byte delta instead of %d bytes", new.name, info.length, new.size)
        return got

