"""What this device can accelerate with: the profile's facts plus what the installed libraries offer."""

from __future__ import annotations

import importlib

from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.plan import DeviceFacts


def device_facts(config: RuntimeConfig) -> DeviceFacts:
    """The facts the backend plan is made from. Libraries that are not installed offer nothing."""
    return DeviceFacts(accelerator=config.accelerator, gpu_memory=config.vram, unified_memory=config.unified_memory,
                       memory_budget=config.memory_budget, gpu_offload=_llama_gpu_offload(),
                       onnx_providers=_onnx_providers())


def _llama_gpu_offload() -> bool:
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def _onnx_providers() -> tuple[str, ...]:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())
