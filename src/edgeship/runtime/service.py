"""One runtime: the serving release, its inference calls, metrics and result publishing.

HTTP handlers (``app.py``) parse and format; everything they call is here. Nothing is
global: two runtimes in one process have two hosts, two registries, two publishers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.errors import NotFoundError, RuntimeBackendError
from edgeship.runtime.adapters import check_defaults, choose, describe_adapters, parse_adapters, parse_model
from edgeship.runtime.backend import Backend, BackendOptions
from edgeship.runtime.config import RuntimeConfig, ensure_token
from edgeship.runtime.device import device_facts
from edgeship.runtime.fallbacks import CpuFallbacks
from edgeship.runtime.health import HealthReport, run_suite
from edgeship.runtime.llama import LlamaBackend, Lora
from edgeship.runtime.metrics import RuntimeMetrics
from edgeship.runtime.release import LoadedRelease, PreparedRelease, installed_release, load_release, prepare_release
from edgeship.runtime.schemas import ChatRequest, CompletionRequest
from edgeship.runtime.swap import Lease, ModelHost, NotReadyError, SwapOutcome
from edgeship.runtime.tensors import from_json, summary, to_json

log = logging.getLogger(__name__)
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; chat defaults to "until the context is full"


class ResultSink(Protocol):
    def publish(self, model: str, result: dict[str, Any]) -> bool: ...

    def close(self) -> None: ...


@dataclass
class TokenStream:
    """Chunks of a streamed answer, holding its lease until the last one (or :meth:`close`)."""

    lease: Lease
    chunks: Generator[dict[str, Any], None, None]  # the backend's: closing it frees the model's lock
    stamp: Callable[[dict[str, Any]], dict[str, Any]]
    on_done: Callable[[str, int, float], None]  # text, tokens, seconds
    first: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._started = time.perf_counter()
        self._text: list[str] = []
        self._tokens = 0
        self._done = False
        # Pull the first chunk now: an error (prompt too long) then becomes a 4xx, not a broken stream.
        self.first = next(self.chunks, None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            if self.first is not None:
                yield self._count(self.first)
            for chunk in self.chunks:
                yield self._count(chunk)
            self._finish()
        finally:
            self.close()

    def _count(self, chunk: dict[str, Any]) -> dict[str, Any]:
        chunk = self.stamp(chunk)
        choice = chunk["choices"][0]
        piece = choice.get("text", choice.get("delta", {}).get("content"))
        if piece is not None and choice.get("finish_reason") is None:
            self._tokens += 1
            self._text.append(piece)
        return chunk

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.on_done("".join(self._text), self._tokens, time.perf_counter() - self._started)

    def close(self) -> None:
        """Idempotent: frees the model lock (closing the generator) and the lease."""
        self.chunks.close()
        self.lease.close()


class Runtime:
    def __init__(self, config: RuntimeConfig, *, publisher: ResultSink | None = None) -> None:
        self.config = config
        self.store = DeviceStore(Path(config.data_dir))
        self.metrics = RuntimeMetrics()
        self.options = BackendOptions(threads=config.threads, n_ctx=config.n_ctx, device=device_facts(config))
        self.fallbacks = CpuFallbacks(Path(config.data_dir))
        self.host = ModelHost(lambda d, beside: self.prepare(d, beside).on_cpu(self.fallbacks.get(d.name)),
                              lambda p, beside: load_release(p, self.options, beside),
                              memory_budget=config.memory_budget, ready_wait_s=config.ready_wait_s,
                              drain_timeout_s=config.drain_timeout_s)
        self.publisher = publisher
        self.token = ensure_token(config.token_path)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the release under `current`, if there is one; without one, start not ready."""
        if self.store.link(CURRENT) is None:
            log.warning("no release under %s/current yet: not ready until the agent installs one", self.config.data_dir)
            return
        try:
            self.swap(None)
        except (RuntimeBackendError, NotFoundError) as exc:
            # Stay up and say why on /readyz: the agent's trial sees it and rolls back.
            self.host.last_error = str(exc)
            log.error("cannot serve the current release: %s", exc)

    def close(self) -> None:
        self.host.close()
        self.metrics.ready.set(0)
        if self.publisher is not None:
            self.publisher.close()

    def prepare(self, directory: Path, beside: PreparedRelease | None = None) -> PreparedRelease:
        """Size the installed release at ``directory`` and plan where each model runs (``beside``:
        the release serving now, whose model headers need not be read again)."""
        return prepare_release(directory, self.options, beside)

    def swap(self, release_id: str | None, cpu: Mapping[str, str] | None = None) -> SwapOutcome:
        """Serve ``release_id`` (None: whatever `current` points at now).

        ``cpu`` names the models to run on the CPU, each with why (the agent's trial asks when an
        accelerator failed the health suite); {} runs every model as planned again; None keeps
        what was asked last for that release. A change reloads a release that is already serving.
        """
        directory = installed_release(self.store, release_id)
        before = self.fallbacks.get(directory.name)
        changed = cpu is not None and dict(cpu) != before
        try:
            if changed:
                assert cpu is not None
                self.fallbacks.put(directory.name, cpu, installed=self.store.is_complete)
            outcome = self.host.swap(directory, reload=changed)
        except (RuntimeBackendError, NotFoundError):
            if changed:  # the release keeps running (or will load) as it did before the request
                self.fallbacks.put(directory.name, before, installed=self.store.is_complete)
            self.metrics.swaps.labels("failed").inc()
            self.metrics.ready.set(1 if self.host.current else 0)
            raise
        self.metrics.swaps.labels("ok").inc()
        self.metrics.ready.set(1)
        if outcome.changed:
            self.metrics.load_seconds.set(outcome.load_seconds)
        return outcome

    def set_adapters(self, text: str) -> dict[str, Any]:
        """Attach, detach or rescale the default adapters of the loaded release ("" detaches them all).

        They are attached to their bases after the generation in flight, before this returns;
        the base models stay loaded. A swap starts the new release with none.
        """
        with self.host.lease() as lease:
            release = lease.release
            choices = parse_adapters(text.split("+")) if text else ()
            check_defaults(release.adapters, choices, release.manifest.ref)
            release.default_adapters = choices
            # Attached before the answer, so when it returns requests naming no adapters run with them.
            for name in {a.base for a in release.adapters.values()}:
                self._text_backend(release, name).attach(choose(release.adapters, name, None, choices))
            return describe_adapters(release.adapters, choices)

    def readiness(self) -> dict[str, Any]:
        current = self.host.current
        return {"ready": current is not None, "release_id": current.release_id if current else None,
                "release": current.manifest.ref if current else None, "error": self.host.last_error}

    # -- inference ------------------------------------------------------------------------

    @staticmethod
    def _text_backend(release: LoadedRelease, model: str | None) -> LlamaBackend:
        return release.backend(model, LlamaBackend, "text")

    def completion(self, req: CompletionRequest) -> dict[str, Any] | TokenStream:
        params = req.params(COMPLETION_MAX_TOKENS)
        return self._generate(req.model, "completions", req.stream,
                              lambda b, lora: b.stream_complete(req.prompt, params, lora),
                              lambda b, lora: b.complete(req.prompt, params, lora),
                              lambda out: out["choices"][0]["text"])

    def chat(self, req: ChatRequest) -> dict[str, Any] | TokenStream:
        params = req.params(None)
        messages = [m.plain() for m in req.messages]
        return self._generate(req.model, "chat.completions", req.stream,
                              lambda b, lora: b.stream_chat(messages, params, lora),
                              lambda b, lora: b.chat(messages, params, lora),
                              lambda out: out["choices"][0]["message"]["content"] or "")

    def _generate(self, model: str, endpoint: str, stream: bool,
                  streamer: Callable[[LlamaBackend, Lora], Generator[dict[str, Any], None, None]],
                  caller: Callable[[LlamaBackend, Lora], dict[str, Any]],
                  text_of: Callable[[dict[str, Any]], str]) -> dict[str, Any] | TokenStream:
        lease = self.host.lease()
        handed_over = False  # a stream owns its lease until its last chunk
        try:
            base, named = parse_model(model)
            backend = self._text_backend(lease.release, base)
            lora = choose(lease.release.adapters, backend.component.name, named, lease.release.default_adapters)
            release_id = lease.release.release_id

            def done(text: str, tokens: int, seconds: float) -> None:
                self.metrics.observe_generation(model, tokens, seconds)
                self._publish(model, endpoint, release_id, seconds, text)

            if stream:
                result = TokenStream(lease, streamer(backend, lora), lambda c: self._stamp(c, model, release_id), done)
                handed_over = True
                return result
            started = time.perf_counter()
            out = caller(backend, lora)
            done(text_of(out), out["usage"]["completion_tokens"], time.perf_counter() - started)
            return self._stamp(out, model, release_id)
        finally:
            if not handed_over:
                lease.close()

    @staticmethod
    def _stamp(out: dict[str, Any], model: str, release_id: str) -> dict[str, Any]:
        # system_fingerprint is OpenAI's field for "which backend configuration answered":
        # here the release ID, so a client can tell which release served it across a swap.
        out["model"] = model
        out["system_fingerprint"] = release_id
        return out

    def predict(self, model: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
        """Named tensors in (nested lists or arrays), named tensors out as JSON."""
        from edgeship.runtime.onnx import OnnxBackend

        with self.host.lease() as lease:
            backend = lease.release.backend(model, OnnxBackend, "tensor")
            dtypes = {s.name: s.dtype for s in backend.inputs}
            arrays = {n: v if isinstance(v, np.ndarray) else from_json(n, v, dtypes.get(n, np.dtype(np.float32)))
                      for n, v in inputs.items()}
            started = time.perf_counter()
            outputs = backend.run(arrays)
            seconds = time.perf_counter() - started
            name, release_id = backend.component.name, lease.release.release_id
        self._publish(name, "predict", release_id, seconds, {k: summary(v) for k, v in outputs.items()})
        return {"model": name, "release_id": release_id, "latency_s": seconds,
                "outputs": {k: to_json(v) for k, v in outputs.items()}}

    def predict_image(self, model: str | None, data: bytes, fmt: str) -> tuple[bytes, str, str]:
        """An uploaded PNG/JPEG through an image-to-image model: (image bytes, media type, release ID)."""
        from edgeship.runtime import imaging
        from edgeship.runtime.onnx import OnnxBackend

        with self.host.lease() as lease:
            backend = lease.release.backend(model, OnnxBackend, "tensor")
            started = time.perf_counter()
            image = backend.run_image(data)
            seconds = time.perf_counter() - started
            name, release_id = backend.component.name, lease.release.release_id
        body, media_type = imaging.encode(image, fmt)
        self._publish(name, "predict", release_id, seconds,
                      {"image": {"width": image.width, "height": image.height, "format": fmt, "bytes": len(body)}})
        return body, media_type, release_id

    def _publish(self, model: str, endpoint: str, release_id: str, seconds: float, output: Any) -> None:
        if self.publisher is not None:
            self.publisher.publish(model, {"ts": time.time(), "release_id": release_id, "endpoint": endpoint,
                                           "latency_s": round(seconds, 6), "output": output})

    def models(self) -> list[dict[str, Any]]:
        current = self.host.current
        if current is None:
            return []
        return [_describe(current, name, backend) for name, backend in current.backends.items()]

    def props(self, model: str | None) -> dict[str, Any]:
        """What llama.cpp's server tells at /props, for one text model: context, chat template (with
        its text) and stop strings, and the release serving it."""
        current = self.host.current
        if current is None:
            raise NotReadyError("no model is loaded right now", hint="GET /readyz says when the runtime is ready")
        backend = self._text_backend(current, model)
        entry = _describe(current, backend.component.name, backend)
        if backend.template is not None:
            entry["chat_template"] = {**backend.template.describe(), "text": backend.template.text}
        return entry

    def health(self) -> HealthReport:
        with self.host.lease() as lease:
            return run_suite(lease.release)


def _describe(release: LoadedRelease, name: str, backend: Backend) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(release.loaded_at), "owned_by": "edgeship",
            "kind": backend.component.kind.value, "release_id": release.release_id, "release": release.manifest.ref,
            "adapters": sorted(n for n, a in release.adapters.items() if a.base == name), **backend.describe()}


def sse(stream: TokenStream) -> Iterator[str]:
    """Server-sent events as OpenAI streams them: one ``data:`` line per chunk, then ``[DONE]``."""
    for chunk in stream:
        yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"
