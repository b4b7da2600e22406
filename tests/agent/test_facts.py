"""`agent run --fact`: a device presents itself as other hardware, and releases are checked against that."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeship.agent.api import device_facts, parse_facts
from edgeship.errors import UsageError
from edgeship.release.bundle import ComponentSpec, build_release, parse_requirements
from edgeship.release.manifest import ComponentKind
from edgeship.server.schemas import Facts
from tests.agent.harness import Device, Releases, Server

# An architecture this machine is not, so only an override can satisfy it.
BOARD = "aarch64" if platform.machine() != "aarch64" else "x86_64"


def test_overrides_replace_the_measured_facts_and_keep_the_rest() -> None:
    facts = device_facts("Europe/Berlin", parse_facts(["arch=aarch64", "ram_bytes=4GiB", "accelerator=cuda"]))
    assert (facts["arch"], facts["ram"], facts["accelerator"]) == ("aarch64", 4 << 30, "cuda")
    assert facts["timezone"] == "Europe/Berlin" and facts["agent_version"]
    assert device_facts("UTC")["arch"] == platform.machine()


@pytest.mark.parametrize(("item", "message"), [
    ("arch", "not understood"),
    ("arch=", "not understood"),
    ("colour=red", "unknown fact 'colour'"),
    ("agent_version=9", "unknown fact 'agent_version'"),
    ("arch=arm 64", "one word"),
    ("accelerator=cuda|rocm", "one word"),
    ("ram=lots", "size 'lots' not understood"),
    ("ram=0", "more than 0 bytes"),
])
def test_bad_facts_are_refused_with_what_to_write(item: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_facts([item])
    assert info.value.hint


@pytest.fixture
def server(releases: Releases, start_server: Callable[[], Server]) -> Server:
    spec = ComponentSpec(ComponentKind.GGUF, releases.model, "model")
    releases.ws.publish(build_release("llm", "1.0.0", [spec], releases.ws.store, requirements=parse_requirements(f"arch={BOARD},ram=1GiB")),
                        delta_history=0)
    return start_server()


def test_a_release_for_a_board_installs_only_where_the_agent_presents_that_board(server: Server, releases: Releases, tmp_path: Path) -> None:
    devices = {}
    for name in ("board", "bench", "small"):
        devices[name] = Device(server, tmp_path / name, releases.root(), f"dev={name}", server.enroll_token({"dev": name}))
        server.assign("llm@1.0.0", tag=f"dev={name}")
    board, bench, small = devices["board"], devices["bench"], devices["small"]

    r = board.run("--fact", f"arch={BOARD}", "--fact", "ram=2GiB")
    assert r.returncode == 0 and board.version() == "1.0.0", r.stderr
    seen = server.admin("GET", f"/v1/admin/devices/{board.device_id}")["facts"]
    assert (seen["arch"], seen["ram"]) == (BOARD, 2 << 30), "the server must see the facts the agent presents"

    r = bench.run()
    assert r.returncode == 1 and bench.version() is None
    assert f"needs arch {BOARD}, device is {platform.machine()}" in r.stderr, r.stderr

    # Too little RAM is refused the same way, naming the requirement.
    r = small.run("--fact", f"arch={BOARD}", "--fact", "ram=512MiB")
    assert r.returncode == 1 and small.version() is None
    assert f"needs {1 << 30} bytes of RAM, device has {512 << 20}" in r.stderr, r.stderr


def test_a_bad_fact_stops_the_agent_before_it_starts(tmp_path: Path, releases: Releases) -> None:
    d = Device(Server.create(releases.ws, tmp_path / "server"), tmp_path / "dev", releases.root(), "dev=x", "token")
    r = d.run("--fact", "arch=arm 64")
    assert r.returncode != 0 and "one word" in r.stderr and not (d.data / "identity.json").exists()


def test_facts_the_os_hands_over_undecoded_are_sent_as_valid_unicode() -> None:
    # A hostname or argument that is not UTF-8 reaches Python as lone surrogates (surrogateescape);
    # the server refuses those, so sent as they were, every check-in of the device would fail.
    raw = b"caf\xe9-bench".decode("utf-8", "surrogateescape")
    facts = device_facts("UTC", {"hostname": raw, "os": "x\ud800"})
    assert facts["hostname"].startswith("caf") and facts["hostname"].endswith("-bench") and "\ufffd" in facts["hostname"]
    assert json.dumps(facts, ensure_ascii=False).encode()  # valid Unicode throughout
    assert Facts.model_validate(facts).hostname == facts["hostname"]
