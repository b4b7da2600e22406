"""A narrow door to llama.cpp (through llama-cpp-python's C bindings) for the optimizer.

Why the C API and not ``llama_cpp.Llama``: the optimizer needs settings ``Llama`` does not
expose. Models load with ``use_extra_bufts = False``: llama.cpp's AMX "extra buffer" repacks
Q8_0/Q4_0/K-quant weights on CPUs that report AMX, and its kernels crash (SIGSEGV) on
such hosts (seen with llama-cpp-python 0.3.36 on a Xeon VM), while plain CPU buffers work
everywhere. It also keeps memory honest: weights stay in the mmap'd file, no second copy.
Flash attention is off, as in ``Llama``'s default, so the memory estimator's formulas apply.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from edgeship.errors import OptimizeError

LogHook = Callable[[str], None]

# llama.cpp has one log sink per process. It points at a single callback that hands each
# line to the innermost ``capture_logs`` hook; the ctypes callback object must live as long
# as the process, or llama.cpp calls freed memory.
_hooks: list[LogHook] = []
_hooks_lock = threading.Lock()
_callback: object | None = None


def bindings() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise OptimizeError(
            "llama-cpp-python is not installed", hint="install edgeship with the [llm] extra: pip install 'edgeship[llm]'"
        ) from exc
    global _callback
    if _callback is None:

        @llama_cpp.llama_log_callback
        def _sink(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            hook = _hooks[-1] if _hooks else None
            if hook is not None:
                hook(text.decode("utf-8", errors="replace"))

        _callback = _sink
        llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


@contextmanager
def capture_logs(hook: LogHook | None = None) -> Iterator[list[str]]:
    """Collect llama.cpp's log lines (and pass each to ``hook``) instead of printing them."""
    lines: list[str] = []

    def handle(text: str) -> None:
        lines.append(text)
        if hook is not None:
            hook(text)

    bindings()
    with _hooks_lock:
        _hooks.append(handle)
    try:
        yield lines
    finally:
        with _hooks_lock:
            _hooks.remove(handle)


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class LoadedModel:
    """One GGUF model and one context, CPU only; use as a context manager."""

    def __init__(self, path: Path, n_ctx: int, *, n_batch: int = 512, n_threads: int | None = None) -> None:
        L = bindings()
        self._L = L
        with capture_logs() as lines:
            mparams = L.llama_model_default_params()
            mparams.use_extra_bufts = False
            mparams.load_mode = L.LLAMA_LOAD_MODE_MMAP
            self._model = L.llama_model_load_from_file(str(path).encode(), mparams)
            if not self._model:
                raise OptimizeError(f"llama.cpp could not load {path}: {_last_error(lines)}")
            cparams = L.llama_context_default_params()
            cparams.n_ctx = n_ctx
            cparams.n_batch = n_batch
            cparams.n_ubatch = n_batch
            cparams.n_threads = cparams.n_threads_batch = n_threads or default_threads()
            cparams.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
            self._ctx = L.llama_init_from_model(self._model, cparams)
            if not self._ctx:
                L.llama_model_free(self._model)
                raise OptimizeError(f"llama.cpp could not create a {n_ctx}-token context for {path}: {_last_error(lines)}")
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self.n_ctx = L.llama_n_ctx(self._ctx)
        self.n_batch = L.llama_n_batch(self._ctx)  # llama.cpp caps the batch at the context size
        self.bos = L.llama_vocab_bos(self._vocab)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ctx:
            self._L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._L.llama_model_free(self._model)
            self._model = None

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        data = text.encode()
        capacity = len(data) + 8
        buf = (self._L.llama_token * capacity)()
        n = self._L.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_bos, False)
        if n < 0:  # a byte-level vocabulary can need more tokens than bytes: llama.cpp says how many
            capacity = -n
            buf = (self._L.llama_token * capacity)()
            n = self._L.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_bos, False)
        if n < 0:
            raise OptimizeError(f"llama.cpp could not tokenize the text (needs {-n} tokens)")
        return list(buf[:n])

    def reset(self) -> None:
        """Forget the context (the KV cache), so the next decode starts at position 0."""
        self._L.llama_memory_clear(self._L.llama_get_memory(self._ctx), True)

    def decode(self, tokens: Sequence[int], start: int = 0, *, logits: bool = True) -> np.ndarray | None:
        """Feed tokens at positions start.. and return their logits, shape (len(tokens), n_vocab).

        With ``logits=False`` only the last token's logits are computed (what a server does).
        """
        L = self._L
        out = np.empty((len(tokens), self.n_vocab), np.float32) if logits else None
        batch = L.llama_batch_init(self.n_batch, 0, 1)
        try:
            for off in range(0, len(tokens), self.n_batch):
                chunk = tokens[off : off + self.n_batch]
                batch.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = start + off + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = logits or off + i == len(tokens) - 1
                rc = L.llama_decode(self._ctx, batch)
                if rc != 0:
                    raise OptimizeError(f"llama.cpp failed to decode (code {rc}) at position {start + off}")
                if out is not None:
                    ptr = L.llama_get_logits(self._ctx)
                    out[off : off + len(chunk)] = np.ctypeslib.as_array(ptr, shape=(len(chunk) * self.n_vocab,)).reshape(
                        len(chunk), self.n_vocab
                    )
        finally:
            L.llama_batch_free(batch)
        return out

    def next_logits(self) -> np.ndarray:
        """Logits of the last decoded token."""
        ptr = self._L.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()


def _last_error(lines: list[str]) -> str:
    meaningful = [ln.strip() for ln in lines if ln.strip() and ln.strip() != "."]
    return meaningful[-1] if meaningful else "no message"
