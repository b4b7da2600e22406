from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.profiles import load_profiles, parse_catalog, pick_profiles

GiB = 1 << 30


def test_catalog_covers_the_issue_boards() -> None:
    profiles = load_profiles()
    for name in ("pi3-1gb", "pi4-4gb", "pi5-8gb", "jetson-nano-2gb", "jetson-nano-4gb", "jetson-xavier-nx",
                 "jetson-agx-xavier", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "coral-dev-board",
                 "ncs2-host", "oak-d-host", "apple-m1-8gb", "apple-m4-16gb", "x86-laptop-16gb", "x86-desktop-rtx4090"):  # fmt: skip
        assert name in profiles
    nano = profiles["jetson-nano-4gb"]
    assert (nano.ram, nano.arch, nano.accelerator) == (4 * GiB, "aarch64", "cuda")
    assert nano.usable_bytes == int(4 * GiB * 0.7)
    assert profiles["pi5-8gb"].accelerator is None
    # TOPS from the seed table
    assert profiles["apple-m4-16gb"].tops == 38
    assert profiles["x86-desktop-rtx4090"].tops == 325


def test_workspace_profiles_add_and_override(tmp_path: Path) -> None:
    (tmp_path / "profiles.yaml").write_text(
        "profiles:\n"
        "  my-gateway: {ram: 3GiB, arch: x86_64, usable: 0.5, tops: 2}\n"
        "  pi5-8gb: {ram: 8GiB, arch: aarch64, usable: 0.5}\n"
    )
    profiles = load_profiles(tmp_path)
    assert profiles["my-gateway"].usable_bytes == int(3 * GiB * 0.5)
    assert profiles["my-gateway"].source.endswith("profiles.yaml")
    assert profiles["pi5-8gb"].usable == 0.5
    assert "pi4-4gb" in profiles


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: [1, 2]", "no 'profiles:' mapping"),
        ("profiles: {x: {arch: x86_64}}", "lacks 'ram'"),
        ("profiles: {x: {ram: lots, arch: x86_64}}", "not valid"),
        ("profiles: {x: {ram: 1GiB, arch: x86_64, usable: 1.5}}", "usable must be"),
        ("profiles: {x: {ram: 1GiB, arch: x86_64, colour: red}}", "unknown keys: colour"),
        ("profiles: {x: [", "not valid YAML"),
    ],
)
def test_bad_catalogs_are_refused(text: str, message: str) -> None:
    with pytest.raises(OptimizeError, match=message):
        parse_catalog(text, "test.yaml")


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown profiles: nope, nada") as info:
        pick_profiles(load_profiles(), ["pi5-8gb", "nope", "nada"])
    assert "profiles list" in (info.value.hint or "")
    assert [p.name for p in pick_profiles(load_profiles(), ["pi4-2gb", "pi5-8gb"])] == ["pi4-2gb", "pi5-8gb"]
