"""The backend plan: where each model of a release runs on this device.

Pure: device facts (from the profile and from what the installed libraries can do), the
release component and its memory estimate in; a plan out. llama.cpp gets a number of layers
to offload to the GPU; onnxruntime gets execution providers in order of preference, CPU last.
The backends follow the plan and fall back to the CPU when an accelerator fails them: at
load or warm-up (the runtime sees it), or in the release's health suite (:func:`cpu_fallback`
picks which components the agent asks the runtime to reload on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from edgeship.formats.facts import ModelFacts
from edgeship.optimize.memory import MemoryEstimate

MiB = 1 << 20
CPU_PROVIDER = "CPUExecutionProvider"
ALL_LAYERS = -1  # llama-cpp-python's n_gpu_layers for "every layer and the output"
# The CUDA context, cuBLAS workspaces and the driver take this much of a card before any tensor.
VRAM_RESERVE = 512 * MiB

# The profile's accelerator -> onnxruntime execution providers to try, best first.
PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "cuda": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
    "npu": ("OpenVINOExecutionProvider",),  # Intel NPU
    "intel-gpu": ("OpenVINOExecutionProvider",),
    "myriadx": ("OpenVINOExecutionProvider",),
    "ane": ("CoreMLExecutionProvider",),  # Apple: CoreML schedules the Neural Engine and the GPU
    "qnn": ("QNNExecutionProvider",),  # Qualcomm Hexagon
}
# OpenVINO runs on the CPU unless told which Intel device to use.
PROVIDER_OPTIONS: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "npu": {"OpenVINOExecutionProvider": {"device_type": "NPU"}},
    "intel-gpu": {"OpenVINOExecutionProvider": {"device_type": "GPU"}},
    "myriadx": {"OpenVINOExecutionProvider": {"device_type": "MYRIAD"}},
}
# onnxruntime session settings an accelerated session runs with. On CUDA, GELU becomes its tanh
# approximation (FastGelu, one fused kernel): faster, within ~5e-4 of the exact erf form. A model
# that cannot take that fails its health suite and is moved to the CPU, which keeps the exact form.
SESSION_CONFIG: Mapping[str, Mapping[str, str]] = {
    "cuda": {"optimization.enable_gelu_approximation": "1"},
}
# Accelerators llama.cpp can offload layers to (CUDA, Apple's GPU through Metal).
GPU_ACCELERATORS = frozenset({"cuda", "ane"})


@dataclass(frozen=True)
class DeviceFacts:
    accelerator: str | None = None  # the profile's: cuda, npu, ane, qnn, ... None: CPU only
    gpu_memory: int | None = None  # dedicated VRAM in bytes; None: none or unknown
    unified_memory: bool = False  # the GPU shares RAM (Jetson, Apple): it may use what models may use
    memory_budget: int | None = None  # bytes the models may use together (the profile's usable RAM)
    gpu_offload: bool = False  # the installed llama-cpp-python was built with a GPU backend
    onnx_providers: tuple[str, ...] = ()  # execution providers the installed onnxruntime offers

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "onnx_providers": list(self.onnx_providers)}


@dataclass(frozen=True)
class BackendPlan:
    """Where one component runs. ``reason`` says why, in a sentence an operator can act on."""

    n_gpu_layers: int | None = None  # llama.cpp: 0 = CPU, ALL_LAYERS, or a count; None for ONNX
    providers: tuple[str, ...] = ()  # onnxruntime, in order, CPU last; () for GGUF
    provider_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # per provider, e.g. OpenVINO's device
    session_config: Mapping[str, str] = field(default_factory=dict)  # onnxruntime session settings (SESSION_CONFIG)
    reason: str = ""
    fallback: str | None = None  # set when the backend left the plan for the CPU, and why

    @property
    def accelerated(self) -> bool:
        return bool(self.n_gpu_layers) or any(p != CPU_PROVIDER for p in self.providers)

    def on_cpu(self, why: str) -> BackendPlan:
        """The same component on the CPU only, remembering why the plan was left."""
        return replace(self, n_gpu_layers=0 if self.n_gpu_layers is not None else None,
                       providers=(CPU_PROVIDER,) if self.providers else (), provider_options={}, session_config={},
                       fallback=why)

    @property
    def where(self) -> str:
        """Where the accelerated part runs, for a sentence: "all GPU layers", "CUDAExecutionProvider"."""
        if self.n_gpu_layers:
            return "all GPU layers" if self.n_gpu_layers == ALL_LAYERS else f"{self.n_gpu_layers} GPU layers"
        return ", ".join(p for p in self.providers if p != CPU_PROVIDER) or "the CPU"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "providers": list(self.providers),
                "provider_options": {k: dict(v) for k, v in self.provider_options.items()},
                "session_config": dict(self.session_config)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackendPlan:
        """The plan from :meth:`to_json`; fields this version does not know (a newer runtime's) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "providers": tuple(data.get("providers", ()))})


def cpu_fallback(plans: Mapping[str, BackendPlan], failures: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The components to reload on the CPU after a failed health suite, each with why.

    ``failures`` holds what failed per component that answered a check. Only components on an
    accelerated plan move: a failure on the CPU would only repeat. Empty: no retry can help.
    """
    return {name: f"health suite failed on {plans[name].where} ({'; '.join(failed)}): running on the CPU"
            for name, failed in failures.items() if failed and name in plans and plans[name].accelerated}


def plan_gguf(facts: ModelFacts, estimate: MemoryEstimate, device: DeviceFacts) -> BackendPlan:
    """Layers to offload: all when the model fits the GPU's memory, as many as fit otherwise, else none."""
    if device.accelerator not in GPU_ACCELERATORS:
        return BackendPlan(n_gpu_layers=0, reason=f"no GPU llama.cpp can use ({device.accelerator or 'CPU only'})")
    if not device.gpu_offload:
        return BackendPlan(n_gpu_layers=0, reason=f"{device.accelerator} device, but this llama-cpp-python was "
                           "built for the CPU only (reinstall it with CMAKE_ARGS for the GPU backend)")
    room = _gpu_room(device)
    if room is None:
        return BackendPlan(n_gpu_layers=ALL_LAYERS, reason="GPU memory unknown: all layers (a load that does not "
                           "fit falls back to the CPU)")
    if estimate.model_bytes <= room:
        return BackendPlan(n_gpu_layers=ALL_LAYERS, reason=f"the model ({_mib(estimate.model_bytes)}) fits the "
                           f"GPU's {_mib(room)}: all {facts.n_layer} layers")
    # Each layer carries its share of the weights and of the KV cache; the compute buffer
    # sits on the GPU whatever the count. The output layer counts as one more layer.
    per_layer = (estimate.weights + estimate.kv_cache) / (facts.n_layer + 1)
    count = max(0, min(facts.n_layer, int((room - estimate.compute - estimate.overhead) // per_layer)))
    if count == 0:
        return BackendPlan(n_gpu_layers=0, reason=f"not one layer fits the GPU's {_mib(room)}: CPU")
    return BackendPlan(n_gpu_layers=count, reason=f"the model ({_mib(estimate.model_bytes)}) exceeds the GPU's "
                       f"{_mib(room)}: {count} of {facts.n_layer} layers on the GPU, the rest on the CPU")


def _gpu_room(device: DeviceFacts) -> int | None:
    if device.unified_memory:
        return device.memory_budget
    return None if device.gpu_memory is None else max(0, device.gpu_memory - VRAM_RESERVE)


def plan_onnx(device: DeviceFacts) -> BackendPlan:
    """The accelerator's execution providers this onnxruntime offers, best first, then the CPU."""
    wanted = PROVIDERS.get(device.accelerator or "", ())
    offered = tuple(p for p in wanted if p in device.onnx_providers)
    if not wanted:
        reason = f"no execution provider for {device.accelerator or 'a CPU-only device'}: CPU"
    elif not offered:
        reason = (f"{device.accelerator} wants {', '.join(wanted)}, which this onnxruntime lacks "
                  "(install its build for the accelerator): CPU")
    else:
        reason = f"{device.accelerator}: {', '.join(offered)}, CPU as the fallback"
    options = {p: o for p, o in PROVIDER_OPTIONS.get(device.accelerator or "", {}).items() if p in offered}
    session = SESSION_CONFIG.get(device.accelerator or "", {}) if offered else {}
    return BackendPlan(providers=(*offered, CPU_PROVIDER), provider_options=options, session_config=dict(session),
                       reason=reason)


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"
