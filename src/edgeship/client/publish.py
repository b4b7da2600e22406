"""Pushing a workspace's signed repository to a server: missing files, then metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeship.client.operator import OperatorClient
from edgeship.store.digest import Digest
from edgeship.trust.repository import Repository


@dataclass
class PushReport:
    uploaded: list[str] = field(default_factory=list)
    skipped: int = 0
    server: dict = field(default_factory=dict)


def push_repository(client: OperatorClient, repo: Repository, progress: Callable[[str, int, int], None] | None = None) -> PushReport:
    """Upload every file the current targets (and their bins) name that the server lacks, then
    the targets, the bins newer than the server's and any root versions it does not have yet;
    the server signs snapshot and timestamp."""
    report = PushReport()
    targets = repo.targets()
    for path, tf in sorted(repo.all_targets().items()):
        digest = Digest(tf.hashes["sha256"])
        local = repo.path / path
        hook = (lambda done, p=path, n=tf.length: progress(p, done, n)) if progress else None
        if client.upload(local, digest, tf.length, hook):
            report.uploaded.append(path)
        else:
            report.skipped += 1
    server = client.repository()
    if server["targets_version"] == targets.signed.version:
        report.server = server  # already published (a re-run after a cut connection)
        return report
    server_root = server["root_version"]
    latest_root = repo.root().signed.version
    roots = [json.loads(repo.root_bytes(v)) for v in range(server_root + 1, latest_root + 1)]
    targets_doc = json.loads((repo.metadata_dir / f"{targets.signed.version}.targets.json").read_bytes())
    published = server.get("bins", {})
    latest = repo.latest_versions()
    bins = {name: json.loads((repo.metadata_dir / f"{latest[name]}.{name}.json").read_bytes())
            for name in repo.bins() if latest[name] > published.get(name, 0)}
    report.server = client.publish(targets_doc, roots, bins)
    return report
