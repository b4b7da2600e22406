"""Adapter releases: adapters alone install only where their base model already is, on the
agent (before any download) and on the server (the assignment is refused)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import BASE_META, ComponentKind, Manifest, base_file_name
from edgeship.samples.lora import write_lora
from tests.agent.harness import Device, Releases, Server


@pytest.fixture
def adapters_only(releases: Releases, tmp_path: Path) -> tuple[Manifest, Manifest]:
    """llm@1.0.0 (the base and a config) and support@1.0.0 (one adapter for that base, no base)."""
    base = releases.publish("1.0.0")
    adapter = write_lora(tmp_path / "support-de.gguf", releases.model)
    spec = ComponentSpec(ComponentKind.LORA, adapter, "support-de")
    support = build_release("support", "1.0.0", [spec], releases.ws.store, adapter_base=str(releases.model))
    releases.ws.publish(support, delta_history=0)
    return base, support


@pytest.fixture
def server(start_server: Callable[[], Server], adapters_only: tuple[Manifest, Manifest]) -> Server:
    return start_server()


def test_adapters_alone_install_on_a_device_with_their_base(server: Server, releases: Releases,
                                                           adapters_only: tuple[Manifest, Manifest], tmp_path: Path) -> None:
    base, support = adapters_only
    (model,) = [c for c in base.components if c.kind is ComponentKind.GGUF]
    assert support.components[0].meta[BASE_META] == model.digest
    dev = Device(server, tmp_path / "dev", releases.root(), "dev=a", server.enroll_token({"dev": "a"}))
    server.assign("llm@1.0.0", tag="dev=a")
    assert dev.run().returncode == 0 and dev.version() == "1.0.0"
    assert dev.run().returncode == 0  # checks in again: now the server knows what the device runs

    server.assign("support@1.0.0", tag="dev=a")  # the device reported the base: accepted
    r = dev.run()
    assert r.returncode == 0 and dev.store.describe(dev.store.link("current"))["name"] == "support", r.stderr
    installed = dev.store.release_dir(support.release_id) / base_file_name(model.digest)
    assert installed.stat().st_size == model.size, "the runtime finds the installed base inside the release"
    assert dev.store.gc({support.release_id}) and installed.is_file() and dev.store.has_blob(model.digest)


def test_a_device_without_the_base_refuses_adapters_before_downloading(server: Server, releases: Releases,
                                                                       adapters_only: tuple[Manifest, Manifest],
                                                                       tmp_path: Path) -> None:
    _, support = adapters_only
    # Ordered while no device has the tag, so the server has no one to check yet.
    server.assign("support@1.0.0", tag="dev=b")
    dev = Device(server, tmp_path / "dev", releases.root(), "dev=b", server.enroll_token({"dev": "b"}))
    r = dev.run()
    assert r.returncode == 1 and dev.version() is None
    assert "carries adapters for base model sha256:" in r.stderr and "not installed on this device" in r.stderr, r.stderr
    assert not dev.store.has_blob(support.components[0].digest), "nothing of the release is downloaded"

    # Now the server knows the device and its (empty) installs: the order is refused, by device and by tag.
    for body in ({"device_id": dev.device_id}, {"tag": "dev=b"}):
        with pytest.raises(httpx.HTTPStatusError) as info:
            server.admin("POST", "/v1/admin/assignments", {"release": "support@1.0.0", **body})
        assert info.value.response.status_code == 409
        error = info.value.response.json()["error"]
        assert f"not installed on device {dev.device_id}" in error["message"], error
