"""Device profiles: how much memory a model may use on each kind of device.

The catalog ships with the package (``profiles.yaml`` beside this module); an operator
adds or overrides profiles in ``<workspace>/profiles.yaml`` with the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgeship.errors import OptimizeError, UsageError
from edgeship.units import parse_size

WORKSPACE_PROFILES = "profiles.yaml"

# macOS reports arm64 where Linux reports aarch64 for the same instruction set; a GGUF
# runs on both, so a requirement names both spellings.
ARCH_ALIASES: Mapping[str, tuple[str, ...]] = {"aarch64": ("aarch64", "arm64"), "arm64": ("aarch64", "arm64")}


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    ram: int  # bytes of physical memory
    arch: str  # platform.machine() on the device
    accelerator: str | None  # None: CPU only
    tops: float | None  # int8 TOPS of the accelerator, when known
    usable: float  # share of ram a model may take
    vram: int | None = None  # bytes of dedicated GPU memory, when the device has a discrete GPU
    unified_memory: bool = False  # the GPU shares the RAM (Jetson, Apple silicon)
    notes: str = ""
    source: str = "builtin"  # "builtin" or the file that defined it

    @property
    def usable_bytes(self) -> int:
        return int(self.ram * self.usable)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "usable_bytes": self.usable_bytes}


def _profile(name: str, raw: Any, source: str) -> Profile:
    if not isinstance(raw, Mapping):
        raise OptimizeError(f"profile {name!r} in {source} is not a mapping", hint="see the packaged profiles.yaml for the shape")
    unknown = set(raw) - {"title", "ram", "arch", "accelerator", "tops", "usable", "vram", "unified_memory", "notes"}
    if unknown:
        raise OptimizeError(f"profile {name!r} in {source} has unknown keys: {', '.join(sorted(unknown))}")
    try:
        ram = parse_size(str(raw["ram"]))
        usable = float(raw.get("usable", 0.7))
        tops = raw.get("tops")
        accelerator = str(raw.get("accelerator") or "none")
        profile = Profile(
            name=name,
            title=str(raw.get("title", name)),
            ram=ram,
            arch=str(raw["arch"]),
            accelerator=None if accelerator == "none" else accelerator,
            tops=None if tops is None else float(tops),
            usable=usable,
            vram=parse_size(str(raw["vram"])) if raw.get("vram") is not None else None,
            unified_memory=_flag(raw.get("unified_memory", False)),
            notes=str(raw.get("notes", "")),
            source=source,
        )
    except KeyError as exc:
        raise OptimizeError(f"profile {name!r} in {source} lacks {exc.args[0]!r}", hint="ram and arch are required") from exc
    except (TypeError, ValueError, UsageError) as exc:
        raise OptimizeError(f"profile {name!r} in {source} is not valid: {exc}") from exc
    if not 0 < usable <= 1:
        raise OptimizeError(f"profile {name!r} in {source}: usable must be in (0, 1], got {usable}")
    return profile


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"unified_memory must be true or false, got {value!r}")
    return value


def parse_catalog(text: str, source: str) -> dict[str, Profile]:
    """Profiles from the YAML text of a catalog file."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise OptimizeError(f"{source} is not valid YAML: {exc}") from exc
    raw = doc.get("profiles") if isinstance(doc, Mapping) else None
    if not isinstance(raw, Mapping):
        raise OptimizeError(f"{source} has no 'profiles:' mapping", hint="write profiles: {name: {ram: 4GiB, arch: aarch64}}")
    return {str(name): _profile(str(name), value, source) for name, value in raw.items()}


def load_profiles(workspace: Path | None = None) -> dict[str, Profile]:
    """The packaged catalog, then the workspace's own profiles on top."""
    builtin = resources.files("edgeship.optimize").joinpath("profiles.yaml").read_text()
    profiles = parse_catalog(builtin, "builtin")
    if workspace is not None and (workspace / WORKSPACE_PROFILES).is_file():
        path = workspace / WORKSPACE_PROFILES
        profiles.update(parse_catalog(path.read_text(), str(path)))
    return profiles


def pick_profiles(profiles: Mapping[str, Profile], names: list[str]) -> list[Profile]:
    """The named profiles, in the order given; an unknown name is an error that lists the known ones."""
    unknown = [n for n in names if n not in profiles]
    if unknown:
        raise UsageError(
            f"unknown profile{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint="see `edgeship profiles list`; add your own in <workspace>/profiles.yaml",
        )
    if not names:
        raise UsageError("no profile given", hint="pass --profiles pi5-8gb,jetson-nano-4gb (see `edgeship profiles list`)")
    return [profiles[n] for n in names]
