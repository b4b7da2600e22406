"""Catalog size vs what one device fetches and verifies: flat targets against hashed bins.

    python benchmarks/catalog.py                       # 100, 1,000 and 10,000 releases
    python benchmarks/catalog.py --releases 100,10000 --repeat 3

For each catalog size, two real TUF repositories signed with real keys (one flat, one in
``2**trust.bins.BIT_LENGTH`` hashed bins) hold N releases: one real release (a manifest and
its component files, as `release push` signs them) and N-1 synthetic ones whose targets
entries are shaped like real ones (a manifest entry with its edgeship record and two blob
entries), so every targets file has the size a real catalog's would. A device then, through
python-tuf's ngclient over file:// (no network time in the figures):

- installs: a fresh metadata dir with only the root, refresh, look up the release's manifest
  and component targets, download and hash-check the manifest (the bytes of the components
  are the same for both layouts and left out);
- updates: one more release is signed and the same device refreshes and looks it up.

Printed per layout and size: metadata bytes fetched and wall time (best of --repeat), with
the binned/flat ratio measured in the same run. Time includes JSON parsing and signature
checks, which is what grows with the catalog.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from edgeship.samples.llama import write_tiny_llama
from edgeship.trust.client import ReleaseVerifier
from edgeship.trust.fetcher import LocalFetcher
from edgeship.trust.targets import blob_path, manifest_path
from edgeship.store.digest import Digest
from edgeship.workspace import Workspace

NAME = "app"


class CountingFetcher(LocalFetcher):
    """Counts the bytes ngclient reads (every metadata file and the manifest)."""

    def __init__(self) -> None:
        self.fetched = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        for chunk in super()._fetch(url):
            self.fetched += len(chunk)
            yield chunk


def synthetic(i: int) -> list[TargetFile]:
    """The three targets entries of one release: manifest (with its signed record) and two blobs."""
    version = f"0.{i // 1000}.{i % 1000}"
    h = [hashlib.sha256(f"{i}/{k}".encode()).hexdigest() for k in range(3)]
    manifest = TargetFile(1500 + i % 500, {"sha256": h[0]}, manifest_path(NAME, version))
    manifest.unrecognized_fields["custom"] = {"edgeship": {
        "kind": "release", "name": NAME, "version": version, "release_id": h[0],
        "rollback_to": None, "rollback_allowed": []}}
    blobs = [TargetFile(2**20 + k, {"sha256": h[k]}, blob_path(Digest(h[k])), {"custom": {"edgeship": {"kind": "blob"}}})
             for k in (1, 2)]
    return [manifest, *blobs]


@dataclass
class Result:
    layout: str
    releases: int
    install_bytes: int
    install_s: float
    update_bytes: int
    update_s: float


def device_pass(repo_dir: Path, metadata_dir: Path, version: str, root: bytes | None) -> tuple[int, float]:
    fetcher = CountingFetcher()
    start = time.perf_counter()
    verifier = ReleaseVerifier(str(repo_dir), metadata_dir, root, fetcher)
    manifest = verifier.manifest("llm", version, metadata_dir.parent / "work")
    for c in manifest.components:
        verifier.signed_blob(c)
    return fetcher.fetched, time.perf_counter() - start


def measure(tmp: Path, model: Path, releases: int, binned: bool, repeat: int) -> Result:
    from tests.agent.harness import Releases  # the same publishing path the tests use

    ws = Workspace.init(tmp / "ws", passphrase=None)
    ws.config.bin_at = 0 if binned else 10**9
    ws.save_config()
    ws = Workspace.open(ws.root)
    real = Releases(ws, model, tmp / "src")
    real.publish("1.0.0")
    ws.repository().add_targets([f for i in range(releases - 1) for f in synthetic(i)])
    root = real.root().read_bytes()
    best_install = best_update = (0, float("inf"))
    for r in range(repeat):
        n, s = device_pass(ws.repo_dir, tmp / f"dev{r}" / "tuf", "1.0.0", root)
        best_install = min(best_install, (n, s), key=lambda x: x[1])
    real.publish("2.0.0")
    for r in range(repeat):
        n, s = device_pass(ws.repo_dir, tmp / f"dev{r}" / "tuf", "2.0.0", None)
        best_update = min(best_update, (n, s), key=lambda x: x[1])
    return Result("binned" if binned else "flat", releases, *best_install, *best_update)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--releases", default="100,1000,10000", help="catalog sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="device passes per figure; the fastest counts")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.releases.split(",")]
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as d:
        model = write_tiny_llama(Path(d) / "model.gguf")
        for n in sizes:
            for binned in (False, True):
                results.append(measure(Path(d) / f"{n}-{binned}", model, n, binned, args.repeat))
    print(f"{'releases':>9} {'layout':>7} {'install KB':>11} {'install ms':>11} {'update KB':>10} {'update ms':>10}")
    for r in results:
        print(f"{r.releases:>9} {r.layout:>7} {r.install_bytes / 1000:>11.1f} {r.install_s * 1000:>11.1f} "
              f"{r.update_bytes / 1000:>10.1f} {r.update_s * 1000:>10.1f}")
    print("\nbinned / flat, same run:")
    for n in sizes:
        f, b = (next(r for r in results if r.releases == n and r.layout == k) for k in ("flat", "binned"))
        print(f"{n:>9} releases: install bytes x{b.install_bytes / f.install_bytes:.3f}, time x{b.install_s / f.install_s:.2f}; "
              f"update bytes x{b.update_bytes / f.update_bytes:.3f}, time x{b.update_s / f.update_s:.2f}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
