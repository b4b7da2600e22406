"""GGUF language models through llama-cpp-python, answering in OpenAI's shapes."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeship.errors import EdgeshipError, RuntimeBackendError, UsageError
from edgeship.formats import read_facts
from edgeship.formats.facts import ModelFacts
from edgeship.optimize.memory import estimate_memory
from edgeship.release.manifest import Component
from edgeship.runtime.backend import BackendOptions, Prepared, require
from edgeship.release.bundle import CHAT_TEMPLATE_META
from edgeship.runtime.chat import ChatTemplate, choose_template, missing_template_hint
from edgeship.runtime.plan import plan_gguf
from edgeship.runtime.rss import libc

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)
Lora = tuple[tuple[Any, float], ...]  # llama.cpp adapter handles and their scales
_SAMPLE_CHAT = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = 16
    temperature: float = 0.8
    top_p: float = 0.95
    stop: list[str] | None = None
    seed: int | None = None

    def kwargs(self, extra_stop: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": [*(self.stop or []), *extra_stop], "seed": self.seed}


def prepare_gguf(component: Component, path: Path, options: BackendOptions,
                 facts: ModelFacts | None = None) -> Prepared:
    """Read the GGUF header once (unless its ``facts`` are known): they size the model now and are kept for the load."""
    try:
        facts = facts or read_facts(path)
    except EdgeshipError as exc:
        raise RuntimeBackendError(f"cannot read the GGUF header of component {component.name}: {exc}",
                                  hint="the file is damaged or not GGUF; reinstall the release") from exc
    estimate = estimate_memory(facts, options.n_ctx)
    return Prepared(component, path, estimate.model_bytes, plan_gguf(facts, estimate, options.device), facts)


class ChatTemplateError(UsageError):
    """The model's chat template refused the conversation, or the model has none."""


# llama-cpp-python's Llama() has no switch for llama.cpp's "extra buffer types" (weight
# repacking for AMX and other CPU kernels), and those kernels crash on some hosts with
# quantized models (see edgeship.optimize.llamacpp). Llama() takes its model parameters from
# llama_model_default_params(); while it loads, that function hands out parameters with
# repacking off. One load at a time: the swap is process-wide while it lasts.
_load_lock = threading.Lock()


@contextlib.contextmanager
def _loading(bindings: Any) -> Iterator[None]:
    """While Llama() loads: weight repacking off, and llama.cpp's log silenced (see _silent_log)."""
    original = bindings.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    with _load_lock, _silent_log(bindings):
        bindings.llama_model_default_params = params
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


@contextlib.contextmanager
def _silent_log(bindings: Any) -> Iterator[None]:
    """llama.cpp's log goes nowhere, and without taking the GIL, until the block ends (glibc only).

    llama-cpp-python logs through a Python callback, which llama.cpp calls ~1,400 times while
    it loads Gemma 3 (a line per tensor, per cache layer...): each call waits for the GIL the
    threads serving requests hold, and a swap's load took ~0.15 s longer under load. With
    verbose=False the lines go to /dev/null anyway. The no-op is libc's abs(int): C callers
    clean up the arguments, so the text and user data it ignores do no harm.
    """
    c = libc()
    if c is None:
        yield
        return
    previous, data = bindings.llama_log_callback(), ctypes.c_void_p()
    bindings.llama_log_get(ctypes.byref(previous), ctypes.byref(data))
    bindings.llama_log_set(ctypes.cast(c.abs, bindings.llama_log_callback), None)
    try:
        yield
    finally:
        bindings.llama_log_set(previous, data)


class _SharedModel:
    """One llama.cpp model and context, shared by the backends of every loaded release that ships
    the same GGUF bytes with the same plan (a release that changes only a template or its
    manifest): a swap between them loads nothing. Freed when its last backend closes."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.lock = threading.Lock()  # llama.cpp contexts are not thread-safe: one generation at a time
        self.lora: Lora = ()  # the adapters attached to the context now
        self.adapters = False  # adapters were initialised on it: they live until the model is freed
        self._users = 1
        self._count = threading.Lock()

    def join(self) -> bool:
        """One more backend uses the model; False once it is freed (too late to share)."""
        with self._count:
            if self._users == 0:
                return False
            self._users += 1
            return True

    def leave(self) -> None:
        """One backend is done with the model; the last one frees it (after the generation in flight)."""
        with self._count:
            self._users -= 1
            last = self._users == 0
        if last:
            with self.lock:
                self.llama.close()


class LlamaBackend:
    """One GGUF model of one release. Its llama.cpp model may be shared with another release's backend."""

    def __init__(self, prepared: Prepared, model: _SharedModel, template: ChatTemplate | None) -> None:
        self.component = prepared.component
        self._model = model
        self._llama = model.llama
        self._estimate = prepared.memory
        self.plan = prepared.plan
        self.template = template
        # Read now: describe() answers from async handlers without the lock, maybe just as a swap frees the model.
        self._facts = {"architecture": prepared.facts.arch, "n_ctx": model.llama.n_ctx(),
                       "n_ctx_train": prepared.facts.ctx_train}
        # Per backend, not on the shared Llama: two releases sharing a model may bring two templates.
        self._chat_handler = _chat_handler(model.llama, self.component, template) if template is not None else None

    @classmethod
    def load(cls, prepared: Prepared, options: BackendOptions) -> LlamaBackend:
        component, path = prepared.component, prepared.path
        llama_cpp = require(component, "llama_cpp", "llama-cpp-python", "llm")
        try:
            with _loading(llama_cpp.llama_cpp):
                llama = llama_cpp.Llama(model_path=str(path), n_ctx=options.n_ctx, n_threads=options.threads,
                                        n_gpu_layers=prepared.plan.n_gpu_layers or 0, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RuntimeBackendError(
                f"llama.cpp cannot load component {component.name}: {exc}",
                hint="check that the GGUF file is complete and of an architecture this llama.cpp supports",
            ) from exc
        model = _SharedModel(llama)
        try:
            return cls._over(prepared, model)
        except BaseException:
            model.leave()
            raise

    def shares(self, prepared: Prepared) -> bool:
        """Whether ``prepared`` can run on this backend's loaded model: the same GGUF bytes, planned alike,
        and no adapters initialised on it (they stay until the model is freed: sharing would pile them up)."""
        return (prepared.component.kind is self.component.kind and prepared.component.digest == self.component.digest
                and prepared.plan == self.plan and not self._model.adapters)

    def sibling(self, prepared: Prepared) -> LlamaBackend | None:
        """A backend for ``prepared`` (see :meth:`shares`) on this one's model, already warm; None if it is freed."""
        if not self._model.join():
            return None
        try:
            return self._over(prepared, self._model)
        except BaseException:
            self._model.leave()
            raise

    @classmethod
    def _over(cls, prepared: Prepared, model: _SharedModel) -> LlamaBackend:
        metadata = model.llama.metadata
        component = prepared.component
        template = choose_template(component.meta.get(CHAT_TEMPLATE_META), metadata.get("tokenizer.chat_template"),
                                   metadata.get("general.architecture"))
        backend = cls(prepared, model, template)
        if template is None:
            log.warning("model %s (%s): no chat template; chats are refused, completions work",
                        component.name, metadata.get("general.architecture"))
        else:
            log.info("model %s: chat template from %s", component.name, template.source)
        return backend

    def warmup(self) -> None:
        # On one thread: a prompt of one word needs no second one, and with a busy neighbour on the
        # cores the threads' barriers cost far more than the token (0.1-1.7 s on two threads, 0.06 s on one).
        llama = self._llama
        llama._ctx.set_n_threads(llama.n_threads, 1)
        try:
            self.complete("Hi", GenerationParams(max_tokens=1, temperature=0.0))
        finally:
            llama._ctx.set_n_threads(llama.n_threads, llama.n_threads_batch)

    def memory_bytes(self) -> int:
        return self._estimate

    def describe(self) -> dict[str, Any]:
        """What /v1/models and /props show: context, chat template and its stop strings."""
        return {**self._facts, "chat_template": self.template.describe() if self.template else None,
                "plan": self.plan.to_json()}

    def close(self) -> None:
        self._model.leave()

    def complete(self, prompt: str, params: GenerationParams, lora: Lora = ()) -> dict[str, Any]:
        with self._generating(lora):
            return self._llama.create_completion(prompt, **params.kwargs())  # type: ignore[return-value]

    def stream_complete(self, prompt: str, params: GenerationParams, lora: Lora = ()) -> Generator[dict[str, Any], None, None]:
        with self._generating(lora):
            yield from self._llama.create_completion(prompt, stream=True, **params.kwargs())  # type: ignore[misc]

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams, lora: Lora = ()) -> dict[str, Any]:
        stop = self._chat_stop()
        with self._generating(lora):
            self._llama.chat_handler = self._chat_handler
            return self._llama.create_chat_completion(messages, **params.kwargs(stop))  # type: ignore[arg-type,return-value]

    def stream_chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                    lora: Lora = ()) -> Generator[dict[str, Any], None, None]:
        stop = self._chat_stop()
        with self._generating(lora):
            self._llama.chat_handler = self._chat_handler
            yield from self._llama.create_chat_completion(messages, stream=True, **params.kwargs(stop))  # type: ignore[arg-type,misc]

    def init_adapter(self, path: Path) -> Any:
        """Initialise the LoRA adapter at ``path`` on this model (not attached yet; freed with the model)."""
        import llama_cpp

        with self._model.lock:
            self._model.adapters = True
            handle = llama_cpp.llama_adapter_lora_init(self._llama._model.model, str(path).encode())
        if not handle:
            raise RuntimeBackendError(f"llama.cpp cannot load {path.name} as a LoRA adapter of {self.component.name}",
                                      hint="check that it was exported for this base model's architecture and shapes")
        return handle

    def attach(self, lora: Lora) -> None:
        """Attach ``lora`` now (after the generation in flight), as the next generation would."""
        with self._generating(lora):
            pass

    @contextlib.contextmanager
    def _generating(self, lora: Lora) -> Iterator[None]:
        """One generation at a time, with ``lora`` attached to the context (changed only when it differs)."""
        with self._model.lock, _library_errors():
            if lora != self._model.lora:
                self._attach(lora)
            yield

    def _attach(self, lora: Lora) -> None:
        import ctypes

        import llama_cpp

        handles = (llama_cpp.llama_adapter_lora_p_ctypes * len(lora))(*(h for h, _ in lora))
        scales = (ctypes.c_float * len(lora))(*(s for _, s in lora))
        if llama_cpp.llama_set_adapters_lora(self._llama._ctx.ctx, handles, len(lora), scales):
            raise RuntimeBackendError(f"llama.cpp refused to attach adapters to {self.component.name}",
                                      hint="the adapters may not fit this model's context; restart the runtime")
        self._model.lora = lora
        # Llama() reuses the KV cache of a prompt's common prefix; cached under other adapters, it is stale.
        self._llama.reset()

    def _chat_stop(self) -> tuple[str, ...]:
        if self.template is None:
            raise ChatTemplateError(
                f"model {self.component.name} has no chat template: its GGUF carries none, its release adds none, "
                f"and edgeship knows no default for architecture {self._facts['architecture']!r}",
                hint=missing_template_hint())
        return self.template.stop


def _chat_handler(llama: Llama, component: Component, template: ChatTemplate) -> Any:
    """llama-cpp-python's Jinja chat handler for ``template``, checked on a one-message chat now,
    so a template that cannot render fails the load (and the swap) instead of every chat later."""
    import jinja2
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter, chat_formatter_to_chat_completion_handler

    eos, bos = llama.token_eos(), llama.token_bos()
    what = f"the chat template from {template.source} of component {component.name}"
    try:
        formatter = Jinja2ChatFormatter(template=template.text, eos_token=_token_text(llama, eos),
                                        bos_token=_token_text(llama, bos), stop_token_ids=[eos] if eos != -1 else None)
    except jinja2.TemplateError as exc:
        raise RuntimeBackendError(f"{what} is not a valid Jinja template: {exc}",
                                  hint="fix the template and push a new release") from exc
    guarded = _GuardedFormatter(formatter, what)
    try:
        guarded(messages=_SAMPLE_CHAT)
    except ChatTemplateError as exc:
        raise RuntimeBackendError(f"{exc.message} (a chat of one user message)",
                                  hint="fix the template and push a new release") from exc
    return chat_formatter_to_chat_completion_handler(guarded)


def _token_text(llama: Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace") if token != -1 else ""


class _GuardedFormatter:
    """A formatter whose failures (a template's raise_exception, a Jinja error) are ours to name."""

    def __init__(self, inner: Any, what: str) -> None:
        self._inner, self._what = inner, what

    def __call__(self, **kwargs: Any) -> Any:
        import jinja2

        try:
            return self._inner(**kwargs)
        # raise_exception() in a template raises ValueError; a template reaching for a field a
        # message lacks, TypeError or jinja2's UndefinedError.
        except (ValueError, TypeError, jinja2.TemplateError) as exc:
            raise ChatTemplateError(f"{self._what} cannot render this conversation: {exc}",
                                    hint="check the message roles and their order") from exc


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
