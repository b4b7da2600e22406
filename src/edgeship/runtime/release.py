"""An installed release, loaded: every model component of it behind a backend."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.errors import EdgeshipError, NotFoundError, RuntimeBackendError
from edgeship.release.manifest import ComponentKind, Manifest
from edgeship.runtime.adapters import AdapterChoice, LoraAdapter, adapter_components, base_of, installed_bases
from edgeship.runtime.backend import Backend, BackendOptions, Prepared, load_backend, prepare

if TYPE_CHECKING:
    from edgeship.runtime.llama import LlamaBackend

MANIFEST = "manifest.json"
_RELEASE_ID = re.compile(r"^[0-9a-f]{64}$")
log = logging.getLogger(__name__)
B = TypeVar("B", bound=Backend)


@dataclass
class LoadedRelease:
    release_id: str
    manifest: Manifest
    directory: Path
    backends: dict[str, Backend]
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0  # of load_seconds: the first inference of each model it loaded
    shared: tuple[str, ...] = ()  # models running on the previous release's loaded model: nothing loaded
    loaded_at: float = field(default_factory=time.time)
    adapters: dict[str, LoraAdapter] = field(default_factory=dict)
    default_adapters: tuple[AdapterChoice, ...] = ()  # what a request naming no adapters runs with

    def backend(self, model: str | None, kind: type[B], what: str) -> B:
        """The backend named ``model`` (None: the only one of its kind), or NotFoundError listing what exists."""
        fitting = {name: b for name, b in self.backends.items() if isinstance(b, kind)}
        if model is None and len(fitting) == 1:
            return next(iter(fitting.values()))
        if model in fitting:
            return fitting[model]
        names = ", ".join(sorted(fitting)) or "none"
        if model is None:
            raise NotFoundError(f"this release has {len(fitting)} {what} models; say which", hint=f"available: {names}")
        raise NotFoundError(f"no {what} model {model!r} in release {self.manifest.ref}", hint=f"available: {names}")

    def twin(self, prepared: Prepared) -> LlamaBackend | None:
        """This release's backend whose loaded model ``prepared`` can run on (the same GGUF bytes), if any."""
        from edgeship.runtime.llama import LlamaBackend

        return next((b for b in self.backends.values() if isinstance(b, LlamaBackend) and b.shares(prepared)), None)

    def close(self) -> None:
        for b in self.backends.values():
            b.close()
        self.backends.clear()


def installed_release(store: DeviceStore, release_id: str | None) -> Path:
    """The directory of ``release_id`` (None: the one `current` points at), complete on this device."""
    target = release_id or store.link(CURRENT)
    if target is None or not _RELEASE_ID.match(target):
        raise NotFoundError("no release given and `current` is not set", hint="install a release with the agent first")
    if not store.is_complete(target):
        raise NotFoundError(f"release {target[:12]} is not completely installed on this device",
                            hint="let the agent install and stage it first")
    return store.release_dir(target)


def read_manifest(directory: Path) -> Manifest:
    try:
        return Manifest.from_bytes((directory / MANIFEST).read_bytes())
    except FileNotFoundError as exc:
        raise NotFoundError(f"no release installed at {directory}", hint="let the agent install one, then swap to it") from exc


@dataclass(frozen=True)
class PreparedRelease:
    """An installed release sized for loading: every served component's header read once."""

    directory: Path
    manifest: Manifest
    components: tuple[Prepared, ...]

    @property
    def memory(self) -> int:
        """Bytes the release's models will need once loaded."""
        return sum(p.memory for p in self.components)

    def on_cpu(self, moves: Mapping[str, str]) -> PreparedRelease:
        """The release with the components named in ``moves`` planned for the CPU, each saying why."""
        names = {p.component.name for p in self.components}
        unknown = sorted(set(moves) - names)
        if unknown:
            raise NotFoundError(f"release {self.manifest.ref} has no model {unknown[0]!r} to move to the CPU",
                                hint=f"its models: {', '.join(sorted(names))}")
        return replace(self, components=tuple(p.on_cpu(moves[p.component.name]) if p.component.name in moves else p
                                              for p in self.components))

    def facts(self) -> dict[str, object]:
        """What each model's header said, by the digest of its file."""
        return {p.component.digest: p.facts for p in self.components if p.facts is not None}

    def memory_beside(self, loaded: LoadedRelease) -> int:
        """Bytes loading it needs while ``loaded`` serves: the models it can share with ``loaded`` need none."""
        return sum(p.memory for p in self.components if loaded.twin(p) is None)


def prepare_release(directory: Path, options: BackendOptions, beside: PreparedRelease | None = None) -> PreparedRelease:
    """Read the release's manifest and size each model it serves, from its files alone. A model
    file that ``beside`` (the release serving now) has too, byte for byte, is not read again."""
    manifest = read_manifest(directory)
    models = (*manifest.components, *installed_bases(manifest, directory))
    known = beside.facts() if beside is not None else {}
    served = tuple(prepare(c, directory / c.path, options, known.get(c.digest)) for c in models if _served(c.kind))
    if not served:
        raise RuntimeBackendError(f"release {manifest.ref} has no model the runtime can serve",
                                  hint="add a model/gguf or model/onnx component")
    return PreparedRelease(directory, manifest, served)


def _served(kind: ComponentKind) -> bool:
    return kind in (ComponentKind.GGUF, ComponentKind.ONNX)


def load_release(prepared: PreparedRelease, options: BackendOptions, beside: LoadedRelease | None = None) -> LoadedRelease:
    """Load and warm up every model of the prepared release; all or nothing. A GGUF model that
    ``beside`` (the release serving now) has loaded already, byte for byte, is shared instead:
    a release that changes a template or its manifest swaps in without loading anything."""
    started = time.perf_counter()
    backends: dict[str, Backend] = {}
    warmups: list[float] = []
    shared: list[str] = []
    try:
        for p in prepared.components:
            twin = beside.twin(p) if beside is not None else None
            sibling = twin.sibling(p) if twin is not None else None
            if sibling is not None:
                shared.append(p.component.name)
            backends[p.component.name] = sibling or _load_and_warm(p, options, warmups)
        adapters = _init_adapters(prepared, backends)
    except BaseException:
        # All or nothing: a half-loaded release must not keep memory the old one needs.
        for b in backends.values():
            b.close()
        raise
    return LoadedRelease(prepared.directory.name, prepared.manifest, prepared.directory, backends,
                         time.perf_counter() - started, sum(warmups), tuple(shared), adapters=adapters)


def _init_adapters(prepared: PreparedRelease, backends: dict[str, Backend]) -> dict[str, LoraAdapter]:
    """Initialise every adapter of the release on the model it was trained for (attached per request)."""
    from edgeship.runtime.llama import LlamaBackend

    out = {}
    for c in adapter_components(prepared.manifest):
        base = base_of(c, (p.component for p in prepared.components))
        backend = backends[base.name]
        assert isinstance(backend, LlamaBackend)
        out[c.name] = LoraAdapter(c, base.name, backend.init_adapter(prepared.directory / c.path))
    return out


def _load_and_warm(prepared: Prepared, options: BackendOptions, warmups: list[float]) -> Backend:
    """Load and warm up one model as planned; if its accelerator fails either, on the CPU instead."""
    try:
        return _warm(load_backend(prepared, options), warmups)
    except EdgeshipError as exc:
        if not prepared.plan.accelerated:
            raise
        log.warning("component %s: %s; loading it on the CPU", prepared.component.name, exc.message)
        return _warm(load_backend(prepared.on_cpu(exc.message), options), warmups)


def _warm(backend: Backend, warmups: list[float]) -> Backend:
    """Warm ``backend`` up, adding how long it took to ``warmups``; closed if that fails."""
    started = time.perf_counter()
    try:
        backend.warmup()
    except BaseException:
        backend.close()
        raise
    warmups.append(time.perf_counter() - started)
    return backend
