"""LoRA adapters on a loaded base model: chosen per request or as the release's default.

A request's ``model`` names the base and the adapters to run with it,
``"assistant+support-de"`` or ``"assistant+support-de*0.5"`` (a scale); a bare base name
runs with the default adapters (none until ``POST /admin/adapters`` sets some). llama.cpp
attaches adapters to the context of the loaded base, so choosing others never reloads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship.errors import NotFoundError, RuntimeBackendError, UsageError
from edgeship.release.manifest import BASE_META, MEDIA_TYPES, Component, ComponentKind, Manifest, base_file_name

# The name an adapters-only release's installed base answers to (it is no component of the release).
INSTALLED_BASE = "base"


@dataclass(frozen=True)
class AdapterChoice:
    name: str
    scale: float = 1.0

    def __str__(self) -> str:
        return self.name if self.scale == 1.0 else f"{self.name}*{self.scale:g}"


def parse_model(text: str) -> tuple[str, tuple[AdapterChoice, ...] | None]:
    """``"BASE[+ADAPTER[*SCALE]]..."`` -> base name and adapters (None: none named, use the default)."""
    base, *rest = text.split("+")
    return base, (parse_adapters(rest) if rest else None)


def parse_adapters(items: Iterable[str]) -> tuple[AdapterChoice, ...]:
    choices = []
    for item in items:
        name, sep, scale_text = item.partition("*")
        try:
            scale = float(scale_text) if sep else 1.0
        except ValueError:
            scale = math.nan
        if not name or not math.isfinite(scale):
            raise UsageError(f"adapter {item!r} not understood", hint="write NAME or NAME*SCALE, e.g. support-de*0.5")
        choices.append(AdapterChoice(name, scale))
    names = [c.name for c in choices]
    if len(set(names)) != len(names):
        raise UsageError(f"adapters {'+'.join(names)} name one adapter twice", hint="give each adapter once, with its scale")
    return tuple(choices)


def installed_bases(manifest: Manifest, directory: Path) -> tuple[Component, ...]:
    """The base model of an adapters-only release, as the agent linked it into the release directory."""
    carried = {c.digest for c in manifest.components}
    missing = sorted(manifest.adapter_bases() - carried)
    out = []
    for digest in missing:
        path = directory / base_file_name(digest)
        if not path.is_file():
            raise RuntimeBackendError(f"release {manifest.ref} has adapters for base model {digest[:19]}, "
                                      "which is not installed beside it", hint="let the agent install the release again")
        name = INSTALLED_BASE if len(missing) == 1 else f"{INSTALLED_BASE}-{digest[7:19]}"
        out.append(Component(name=name,
                             kind=ComponentKind.GGUF, path=path.name, digest=digest, size=path.stat().st_size,
                             media_type=MEDIA_TYPES[ComponentKind.GGUF]))
    return tuple(out)


@dataclass(frozen=True)
class LoraAdapter:
    """One adapter, initialised on the model of its base (``base``: that model's name in the release)."""

    component: Component
    base: str
    handle: Any  # llama.cpp's llama_adapter_lora pointer; freed with its model


def adapter_components(manifest: Manifest) -> tuple[Component, ...]:
    return tuple(c for c in manifest.components if c.kind is ComponentKind.LORA)


def base_of(adapter: Component, bases: Iterable[Component]) -> Component:
    """The loaded model ``adapter`` was trained on, by digest."""
    for base in bases:
        if base.digest == adapter.meta[BASE_META]:
            return base
    raise RuntimeBackendError(f"adapter {adapter.name} is for base model {adapter.meta[BASE_META][:19]}, "
                              "which this release does not load", hint="add the base model to the release")


def choose(adapters: dict[str, LoraAdapter], base: str, named: tuple[AdapterChoice, ...] | None,
           defaults: tuple[AdapterChoice, ...]) -> tuple[tuple[Any, float], ...]:
    """llama.cpp handles and scales for a request to ``base``: the adapters it ``named``, else the
    ``defaults`` trained on that base; NotFoundError naming what exists for an unknown one."""
    choices = named if named is not None else tuple(c for c in defaults if adapters[c.name].base == base)
    out = []
    for choice in choices:
        adapter = adapters.get(choice.name)
        if adapter is None or adapter.base != base:
            names = ", ".join(sorted(n for n, a in adapters.items() if a.base == base)) or "none"
            raise NotFoundError(f"no adapter {choice.name!r} for model {base!r} in this release", hint=f"available: {names}")
        out.append((adapter.handle, choice.scale))
    return tuple(out)


def check_defaults(adapters: dict[str, LoraAdapter], choices: tuple[AdapterChoice, ...], ref: str) -> None:
    for c in choices:
        if c.name not in adapters:
            raise NotFoundError(f"no adapter {c.name!r} in release {ref}",
                                hint=f"available: {', '.join(sorted(adapters)) or 'none'}")


def describe_adapters(adapters: dict[str, LoraAdapter], defaults: tuple[AdapterChoice, ...]) -> dict[str, Any]:
    """What ``/admin/adapters`` answers: every adapter with its base, and the defaults."""
    return {"default": [str(c) for c in defaults],
            "adapters": [{"id": n, "base": a.base, "digest": a.component.digest, "size": a.component.size}
                         for n, a in sorted(adapters.items())]}
