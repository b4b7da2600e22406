"""`edgeship verify`: the device-side check of a release, from any repository."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import typer

from edgeship.cli.output import console, human_size, print_json
from edgeship.errors import UsageError, WorkspaceError
from edgeship.release.manifest import parse_ref
from edgeship.trust.client import ReleaseVerifier, repo_url
from edgeship.workspace import CONFIG_FILE, Workspace


def default_cache(url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeship" / "trust" / hashlib.sha256(url.encode()).hexdigest()[:16]


def _trusted_root(root: Path | None, workspace: Path | None) -> bytes:
    if root is not None:
        try:
            return root.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read trusted root {root}: {exc.strerror}") from exc
    try:
        return Workspace.find(workspace).repository().root_bytes(1)
    except WorkspaceError as exc:
        raise UsageError(
            "no trusted root given", hint="pass --root FILE (the operator's repository/metadata/1.root.json) or run inside the workspace"
        ) from exc


def verify(
    ref: str = typer.Argument(..., help="NAME@VERSION of the release to check."),
    repo: str = typer.Option(..., "--repo", help="Repository URL (https://server/repo) or directory (a workspace or its repository/)."),
    root: Path | None = typer.Option(None, "--root", help="Trusted root metadata for first use (default: the workspace's 1.root.json)."),
    metadata_dir: Path | None = typer.Option(
        None, "--metadata-dir", help="Where trusted metadata is kept between runs (default: a per-repository cache dir)."
    ),
    ca: Path | None = typer.Option(None, "--ca", help="CA certificate to pin for an HTTPS repository."),
    keep: Path | None = typer.Option(None, "--keep", help="Keep the verified files in this directory."),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Workspace to take the trusted root from."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Verify a release as a device would: TUF metadata, signatures, expiry, versions, every hash.

    Exits 0 when everything checks out, 4 when a signature, hash or version check fails.
    """
    name, version = parse_ref(ref)
    if version is None:
        raise UsageError("verify needs an exact version", hint=f"write {name}@VERSION")
    repo_dir = Path(repo)
    if "://" not in repo and (repo_dir / CONFIG_FILE).is_file():
        repo = str(repo_dir / "repository")
    url = repo_url(repo)
    verifier = ReleaseVerifier(
        url,
        metadata_dir or default_cache(url),
        _trusted_root(root, workspace),
        ca=str(ca) if ca else None,
    )
    with tempfile.TemporaryDirectory(prefix="edgeship-verify-") as tmp:
        result = verifier.verify_release(name, version, keep or Path(tmp))
        files = {n: (str(p) if keep else None, p.stat().st_size) for n, p in result.files.items()}
    if json_out:
        print_json(
            {
                "ok": True,
                "name": name,
                "version": version,
                "release_id": result.release_id,
                "components": {n: {"size": s, "path": p} for n, (p, s) in files.items()},
            }
        )
        return
    console.print(f"[green]verified[/] {name}@{version}  release {result.release_id[:16]}…")
    for c in result.manifest.components:
        console.print(f"  {c.name:<20} {human_size(c.size):>10}  {c.digest[:19]}…  signature and hash ok")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
