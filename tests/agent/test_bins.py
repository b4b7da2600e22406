"""Hashed-bin delegation end to end: a flat catalog moves into bins at a push, a real agent
that trusted the flat layout installs from the bins through the real server, forged bins are
refused by the agent and by the server, and the bins' pure parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata, TargetFile
from tuf.api.serialization.json import JSONSerializer

from edgeship.client.operator import OperatorClient
from edgeship.client.publish import push_repository
from edgeship.errors import TrustError
from edgeship.server.storage import repo_key
from edgeship.trust import bins
from edgeship.trust import keys as keyfiles
from edgeship.trust.targets import manifest_path
from edgeship.workspace import Workspace, WorkspaceConfig
from tests.agent.harness import Device, Releases, Server

BIN_AT = 12  # 1.0.0 signs 3 files, each later release 2 more: the 6th release moves the catalog into bins
RELEASES = 24


@dataclass
class Catalog:
    server: Server
    releases: Releases
    tmp: Path

    def push(self) -> dict:
        with OperatorClient(self.server.url, self.server.admin_token) as client:
            return push_repository(client, self.releases.ws.repository()).server

    def device(self, name: str) -> Device:
        return Device(self.server, self.tmp / name, self.releases.root(), f"dev={name}", self.server.enroll_token({"dev": name}))

    def install(self, device: Device, version: str) -> None:
        self.server.assign(f"llm@{version}", tag=device.tag)
        run = device.run()
        assert run.returncode == 0 and device.version() == version, run.stderr[-3000:]


@pytest.fixture
def catalog(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    ws.config.bin_at = BIN_AT
    ws.save_config()
    releases = Releases(Workspace.open(ws.root), tiny_gguf, tmp_path / "src")
    releases.publish("1.0.0")
    server = Server.create(releases.ws, tmp_path / "server")
    server.start()
    try:
        yield Catalog(server, releases, tmp_path)
    finally:
        server.stop()


def test_flat_catalog_moves_into_bins_and_a_real_agent_installs_from_them(catalog: Catalog) -> None:
    old = catalog.device("old")
    catalog.install(old, "1.0.0")  # trusts the flat layout
    assert bins.succinct(catalog.releases.ws.repository().targets().signed) is None
    for i in range(2, RELEASES + 1):
        catalog.releases.publish(f"{i}.0.0")
    published = catalog.push()
    repo = catalog.releases.ws.repository()
    assert repo.targets().signed.targets == {}  # every file is in a bin now
    assert len(published["bins"]) == 2**bins.BIT_LENGTH and f"llm@{RELEASES}.0.0" in published["releases"]
    catalog.install(old, f"{RELEASES}.0.0")
    fresh = catalog.device("fresh")
    catalog.install(fresh, "7.0.0")
    # A device fetches the bins of the paths it looks up, not the catalog.
    fetched = sorted(p.name for p in fresh.data.rglob("bins-*.json"))
    assert 0 < len(fetched) <= 4, fetched
    # Only the bins that gain files are re-signed and pushed.
    catalog.releases.publish(f"{RELEASES + 1}.0.0")
    before = published["bins"]
    after = catalog.push()["bins"]
    changed = {n for n in after if after[n] != before[n]}
    assert 1 <= len(changed) <= 3
    catalog.install(old, f"{RELEASES + 1}.0.0")


def forge(raw: bytes, path: str, hexdigest: str = "0" * 64) -> bytes:
    """A bin naming other bytes (``hexdigest``) for ``path``, signed by a key nobody trusts."""
    md = Metadata.from_bytes(raw)
    md.signed.targets[path].hashes["sha256"] = hexdigest
    md.signatures.clear()
    md.sign(keyfiles.signer(keyfiles.generate()))
    return md.to_bytes(JSONSerializer(compact=False))


def test_forged_bin_is_refused_by_the_agent_and_by_the_server(catalog: Catalog) -> None:
    for i in range(2, 8):
        catalog.releases.publish(f"{i}.0.0")
    catalog.push()
    repo = catalog.releases.ws.repository()
    roles = bins.succinct(repo.targets().signed)
    assert roles is not None
    target = manifest_path("llm", "7.0.0")
    name = roles.get_role_for_target(target)
    version = repo.latest_versions()[name]
    served = catalog.server.settings.data_dir / "repository" / "metadata" / f"{version}.{name}.json"
    honest = served.read_bytes()
    served.write_bytes(forge(honest, target))
    device = catalog.device("victim")
    catalog.server.assign("llm@7.0.0", tag=device.tag)
    run = device.run()
    assert run.returncode != 0 and device.version() is None
    assert "not signed by a trusted key" in run.stderr, run.stderr[-2000:]
    served.write_bytes(honest)

    # The server takes no bin its operator did not sign, even with honest targets.
    catalog.releases.publish("8.0.0")
    target = manifest_path("llm", "8.0.0")
    name = roles.get_role_for_target(target)
    latest = repo.latest_versions()
    uploaded = repo.all_targets()[manifest_path("llm", "7.0.0")].hashes["sha256"]  # the server has these bytes
    doc = json.loads(forge((repo.metadata_dir / f"{latest[name]}.{name}.json").read_bytes(), target, uploaded))
    targets_doc = json.loads((repo.metadata_dir / f"{latest['targets']}.targets.json").read_bytes())
    r = httpx.post(catalog.server.url + "/v1/admin/metadata", json={"targets": targets_doc, "roots": [], "bins": {name: doc}},
                   headers={"Authorization": f"Bearer {catalog.server.admin_token}"}, timeout=60)
    assert r.status_code == 422 and f"bin {name}" in r.json()["error"]["message"], r.text
    assert catalog.push()["releases"][-1] == "llm@8.0.0"  # the honest push still goes through
    catalog.install(device, "8.0.0")


def test_bins_sort_paths_by_their_hash_and_name_the_targets_key() -> None:
    key = keyfiles.public_key(keyfiles.generate())
    delegation = bins.delegation(key)
    roles = delegation.succinct_roles
    assert roles is not None and delegation.keys == {key.keyid: key} and roles.keyids == [key.keyid]
    names = list(roles.get_roles())
    assert len(names) == 256 and names[0] == "bins-00" and names[-1] == "bins-ff"
    files = [TargetFile(1, {"sha256": "0" * 64}, f"releases/llm/{i}.json") for i in range(50)]
    groups = bins.sort_into(roles, files)
    assert sum(len(v) for v in groups.values()) == 50
    assert all(roles.get_role_for_target(f.path) == name for name, fs in groups.items() for f in fs)


def test_workspace_without_a_targets_section_keeps_the_default() -> None:
    old = WorkspaceConfig.from_toml('[workspace]\nformat = 1\n[keys]\nencrypted = false\n')
    assert old.bin_at == bins.BIN_AT
    assert WorkspaceConfig.from_toml(WorkspaceConfig(bin_at=7).to_toml()).bin_at == 7


def test_bin_metadata_is_served_and_nothing_else_like_it() -> None:
    assert repo_key("metadata/3.bins-0a.json") == "metadata/3.bins-0a.json"
    for bad in ("metadata/3.bins-0a/../x.json", "metadata/3.bins-zz.json", "metadata/3.bins.json"):
        with pytest.raises(Exception):
            repo_key(bad)


def test_a_bin_the_targets_do_not_delegate_to_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    repo = ws.repository()
    flat = repo.targets()
    flat.signed.version += 1
    flat.signatures.clear()
    flat.sign(ws.keyring.signer("targets"))
    with pytest.raises(TrustError, match="delegate to none"):
        repo.verify_targets(flat.to_bytes(), (), {"bins-00": b"{}"})
