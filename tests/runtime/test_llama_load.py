"""How a GGUF model is loaded and warmed up: llama.cpp's log does not call into Python while it
loads (each call would wait for the GIL the serving threads hold), and the one-token warm-up
runs on one thread; both leave the settings as they found them."""

from __future__ import annotations

import ctypes

import pytest

from edgeship.release.manifest import ComponentKind
from edgeship.runtime.backend import BackendOptions
from edgeship.runtime.llama import LlamaBackend
from edgeship.runtime.release import load_release, prepare_release

from .conftest import Models
from .harness import Device

OPTIONS = BackendOptions(threads=1, n_ctx=256)


def address(callback: object) -> int | None:
    return ctypes.cast(callback, ctypes.c_void_p).value


def test_a_load_does_not_call_the_python_log_callback_and_puts_it_back(device: Device, models: Models) -> None:
    import llama_cpp

    release = device.install("1.0.0", {"llm": (ComponentKind.GGUF, models.llama_a)})
    prepared = prepare_release(device.store.release_dir(release), OPTIONS)
    calls: list[bytes] = []

    @llama_cpp.llama_log_callback
    def counting(level: int, text: bytes, data: object) -> None:
        calls.append(text)

    before, data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(before), ctypes.byref(data))
    llama_cpp.llama_log_set(counting, None)
    try:
        backend = LlamaBackend.load(prepared.components[0], OPTIONS)  # llama.cpp logs ~100 lines for this model
        after = llama_cpp.llama_log_callback()
        llama_cpp.llama_log_get(ctypes.byref(after), ctypes.byref(data))
        assert calls == [] and address(after) == address(counting)
        backend.close()
    finally:
        llama_cpp.llama_log_set(before, None)


def test_the_warm_up_runs_on_one_thread_and_requests_on_all_of_them(device: Device, models: Models,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    release = device.install("1.0.0", {"llm": (ComponentKind.GGUF, models.llama_a)})
    prepared = prepare_release(device.store.release_dir(release), OPTIONS)
    seen: list[int] = []
    complete = LlamaBackend.complete

    def spying(self: LlamaBackend, *args: object, **kwargs: object) -> object:
        seen.append(llama_cpp.llama_n_threads_batch(self._llama._ctx.ctx))
        return complete(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LlamaBackend, "complete", spying)
    loaded = load_release(prepared, OPTIONS)
    try:
        backend = loaded.backends["llm"]
        assert isinstance(backend, LlamaBackend)
        assert seen == [1]  # the warm-up
        assert llama_cpp.llama_n_threads_batch(backend._llama._ctx.ctx) == backend._llama.n_threads_batch > 1
    finally:
        loaded.close()
