"""GGUF language models through llama-cpp-python, answering in OpenAI's shapes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeship.errors import EdgeshipError, RuntimeBackendError, UsageError
from edgeship.formats import read_facts
from edgeship.optimize.memory import estimate_memory
from edgeship.release.manifest import Component
from edgeship.runtime.backend import BackendOptions, require

if TYPE_CHECKING:
    from llama_cpp import Llama


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = 16
    temperature: float = 0.8
    top_p: float = 0.95
    stop: list[str] | None = None
    seed: int | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": self.stop or [], "seed": self.seed}


def estimate_gguf_memory(component: Component, path: Path, options: BackendOptions) -> int:
    """What loading the model and filling its context add to this process (edgeship.optimize's estimate)."""
    try:
        facts = read_facts(path)
    except EdgeshipError as exc:
        raise RuntimeBackendError(f"cannot read the GGUF header of component {component.name}: {exc}",
                                  hint="the file is damaged or not GGUF; reinstall the release") from exc
    return estimate_memory(facts, options.n_ctx).model_bytes


class LlamaBackend:
    """One GGUF model. llama.cpp contexts are not thread-safe: one generation at a time."""

    def __init__(self, component: Component, llama: Llama, estimate: int) -> None:
        self.component = component
        self._llama = llama
        self._estimate = estimate
        self._lock = threading.Lock()

    @classmethod
    def load(cls, component: Component, path: Path, options: BackendOptions) -> LlamaBackend:
        llama_cpp = require(component, "llama_cpp", "llama-cpp-python", "llm")
        try:
            llama = llama_cpp.Llama(model_path=str(path), n_ctx=options.n_ctx, n_threads=options.threads, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RuntimeBackendError(
                f"llama.cpp cannot load component {component.name}: {exc}",
                hint="check that the GGUF file is complete and of an architecture this llama.cpp supports",
            ) from exc
        return cls(component, llama, estimate_gguf_memory(component, path, options))

    def warmup(self) -> None:
        self.complete("Hi", GenerationParams(max_tokens=1, temperature=0.0))

    def memory_bytes(self) -> int:
        return self._estimate

    def close(self) -> None:
        with self._lock:
            self._llama.close()

    def complete(self, prompt: str, params: GenerationParams) -> dict[str, Any]:
        with self._lock, _library_errors():
            return self._llama.create_completion(prompt, **params.kwargs())  # type: ignore[return-value]

    def stream_complete(self, prompt: str, params: GenerationParams) -> Generator[dict[str, Any], None, None]:
        with self._lock, _library_errors():
            yield from self._llama.create_completion(prompt, stream=True, **params.kwargs())  # type: ignore[misc]

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> dict[str, Any]:
        with self._lock, _library_errors():
            return self._llama.create_chat_completion(messages, **params.kwargs())  # type: ignore[arg-type,return-value]

    def stream_chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Generator[dict[str, Any], None, None]:
        with self._lock, _library_errors():
            yield from self._llama.create_chat_completion(messages, stream=True, **params.kwargs())  # type: ignore[arg-type,misc]


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    # llama-cpp-python reports a prompt longer than the context as ValueError (the caller's
    # input), and a context that fills up while generating as RuntimeError from llama_decode.
    try:
        yield
    except ValueError as exc:
        raise UsageError(str(exc), hint="send a shorter prompt or ask for fewer max_tokens") from exc
    except RuntimeError as exc:
        raise RuntimeBackendError(f"llama.cpp failed while generating: {exc}",
                                  hint="the context may be full: ask for fewer max_tokens or start with a larger --ctx") from exc
