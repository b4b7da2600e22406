"""The one protocol every inference backend implements, and how a component gets one.

A backend owns one loaded model component. The runtime only needs to load it, warm it
up, know roughly what it costs in memory and free it; what it computes is the concrete
class's business (:class:`~edgeship.runtime.llama.LlamaBackend` generates text,
:class:`~edgeship.runtime.onnx.OnnxBackend` runs tensors), and the app asks for the
kind it needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from edgeship.errors import RuntimeBackendError
from edgeship.release.manifest import Component, ComponentKind
from edgeship.runtime.plan import BackendPlan, DeviceFacts, plan_onnx


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None
    n_ctx: int = 2048
    device: DeviceFacts = DeviceFacts()  # what the backend plan is made from


@runtime_checkable
class Backend(Protocol):
    component: Component
    plan: BackendPlan  # as followed: after a fallback, the CPU plan and why

    def warmup(self) -> None:
        """Run one tiny inference so the first real request pays no first-call costs."""

    def memory_bytes(self) -> int:
        """Estimated resident bytes once loaded (weights + working memory)."""

    def describe(self) -> dict[str, Any]:
        """Facts /v1/models shows about the loaded model (its inputs, context, chat template...)."""

    def close(self) -> None:
        """Free the model; only called once no request uses it any more."""


@dataclass(frozen=True)
class Prepared:
    """A component sized before loading: its header is read once, here, for the estimate and the load."""

    component: Component
    path: Path
    memory: int  # estimated resident bytes once loaded
    plan: BackendPlan  # where it runs: GPU layers, execution providers
    facts: Any = None  # what the backend read from the file's header (GGUF: ModelFacts)

    def on_cpu(self, why: str) -> Prepared:
        """The same component planned for the CPU alone (its accelerator failed it)."""
        return replace(self, plan=self.plan.on_cpu(why))


def prepare(component: Component, path: Path, options: BackendOptions, facts: Any = None) -> Prepared:
    """Size ``component`` (installed at ``path``) from its file, before loading it; ``facts``: its
    header's, if read already (another release has the same file)."""
    if component.kind is ComponentKind.GGUF:
        from edgeship.runtime.llama import prepare_gguf

        return prepare_gguf(component, path, options, facts)
    # onnxruntime keeps the weights once, plus arenas for activations of about the same order.
    return Prepared(component, path, 2 * component.size, plan_onnx(options.device))


def load_backend(prepared: Prepared, options: BackendOptions) -> Backend:
    """Load one prepared component; raises RuntimeBackendError saying what to do if it cannot."""
    component = prepared.component
    # Imported here: a device with only ONNX models need not install llama-cpp-python.
    if component.kind is ComponentKind.GGUF:
        from edgeship.runtime.llama import LlamaBackend

        return LlamaBackend.load(prepared, options)
    if component.kind is ComponentKind.ONNX:
        from edgeship.runtime.onnx import OnnxBackend

        return OnnxBackend.load(prepared, options)
    raise RuntimeBackendError(
        f"component {component.name} has kind {component.kind.value}, which the runtime cannot serve",
        hint="the runtime serves model/gguf and model/onnx components",
    )


def require(component: Component, module: str, package: str, extra: str) -> ModuleType:
    """Import the inference library ``component`` needs, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeBackendError(
            f"component {component.name} is a {component.kind.value} model but {package} is not installed",
            hint=f"pip install 'edgeship[{extra}]'",
        ) from exc
