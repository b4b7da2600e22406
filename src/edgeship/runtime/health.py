"""The release's health suite: measure it on the runtime (:func:`run_suite`), judge it anywhere (:func:`evaluate`).

Measuring and judging are apart on purpose: the runtime reports what it saw, and the
agent judges those numbers against the manifest it verified itself, so a runtime that
serves the wrong release or a stale answer cannot pass a trial by saying so.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from edgeship.errors import EdgeshipError, NotFoundError
from edgeship.release.manifest import HealthSuite, ImageCheck, LlmCheck, RssCheck
from edgeship.runtime.backend import Backend
from edgeship.runtime.llama import GenerationParams, LlamaBackend
from edgeship.runtime.release import LoadedRelease
from edgeship.runtime.rss import rss_bytes
from edgeship.runtime.tensors import from_npy

if TYPE_CHECKING:
    from edgeship.runtime.onnx import OnnxBackend

_SSIM_WINDOW = 7
PSNR_IDENTICAL = 999.0  # dB; any real threshold is far below


class CheckResult(BaseModel):
    index: int
    type: str
    component: str | None = None  # the model that answered; None for memory, or when none could
    error: str | None = None  # the check could not run; it fails
    text: str | None = None
    tokens: int | None = None
    latency_s: float | None = None
    tokens_per_s: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    rss_bytes: int | None = None


class HealthReport(BaseModel):
    release_id: str
    results: list[CheckResult]
    rss_bytes: int


class HealthVerdict(BaseModel):
    ok: bool
    failures: list[str]
    by_component: dict[str, list[str]] = {}  # the failures of checks a model answered, per model

    @property
    def reason(self) -> str | None:
        return "; ".join(self.failures) if self.failures else None


# -- measuring (on the runtime) ----------------------------------------------------------


def run_suite(release: LoadedRelease) -> HealthReport:
    """Run every inference check of the release's own suite; memory is measured last, after the others."""
    checks = release.manifest.health.inference_checks()
    results = [_measure(release, i, c) for i, c in enumerate(checks) if not isinstance(c, RssCheck)]
    rss = rss_bytes()
    results += [CheckResult(index=i, type=c.type, rss_bytes=rss) for i, c in enumerate(checks) if isinstance(c, RssCheck)]
    return HealthReport(release_id=release.release_id, results=sorted(results, key=lambda r: r.index), rss_bytes=rss)


def _measure(release: LoadedRelease, index: int, check: LlmCheck | ImageCheck) -> CheckResult:
    """One check on the model it names, else the release's only one of its kind; an error is its result (it fails)."""
    backend: Backend | None = None
    try:
        if isinstance(check, LlmCheck):
            backend = llm = release.backend(check.component, LlamaBackend, "text")
            result = _llm(llm, index, check)
        else:
            from edgeship.runtime.onnx import OnnxBackend

            backend = onnx = release.backend(check.component, OnnxBackend, "tensor")
            result = _image(release, onnx, index, check)
    except EdgeshipError as exc:
        result = CheckResult(index=index, type=check.type, error=str(exc))
    return result.model_copy(update={"component": backend.component.name if backend else None})


def _llm(backend: LlamaBackend, index: int, check: LlmCheck) -> CheckResult:
    params = GenerationParams(max_tokens=check.max_tokens, temperature=0.0, seed=check.seed)
    started = time.perf_counter()
    if check.chat:
        out = backend.chat([{"role": "user", "content": check.prompt}], params)
        text = out["choices"][0]["message"]["content"] or ""
    else:
        out = backend.complete(check.prompt, params)
        text = out["choices"][0]["text"]
    latency = time.perf_counter() - started
    tokens = out["usage"]["completion_tokens"]
    return CheckResult(index=index, type=check.type, text=text, tokens=tokens, latency_s=latency,
                       tokens_per_s=tokens / latency if latency > 0 else None)


def _file(release: LoadedRelease, name: str) -> Path:
    for c in release.manifest.components:
        if c.name == name:
            return release.directory / c.path
    raise NotFoundError(f"health check names component {name!r}, which release {release.manifest.ref} lacks",
                        hint="add the file as a component of the release")


def _image(release: LoadedRelease, backend: OnnxBackend, index: int, check: ImageCheck) -> CheckResult:
    from edgeship.runtime import imaging

    data, reference = _file(release, check.input).read_bytes(), _file(release, check.reference).read_bytes()
    started = time.perf_counter()
    if imaging.is_image(data):
        out_image = backend.run_image(data)
        latency = time.perf_counter() - started
        assert backend.image is not None  # run_image refuses models without meta.image
        ref_image = imaging.decode(reference, backend.image).resize(out_image.size)
        got = np.moveaxis(np.atleast_3d(np.asarray(out_image, np.float64)), -1, 0)
        want = np.moveaxis(np.atleast_3d(np.asarray(ref_image, np.float64)), -1, 0)
        peak = 255.0
    else:
        outputs = backend.run({backend.inputs[0].name: from_npy(check.input, data)})
        latency = time.perf_counter() - started
        got = np.asarray(outputs[backend.outputs[0].name], np.float64)
        want = np.asarray(from_npy(check.reference, reference), np.float64)
        if got.shape != want.shape:
            return CheckResult(index=index, type=check.type, latency_s=latency,
                               error=f"output shape {list(got.shape)} differs from the reference's {list(want.shape)}")
        peak = float(want.max() - want.min()) or 1.0
    return CheckResult(index=index, type=check.type, latency_s=latency, psnr=psnr(got, want, peak),
                       ssim=ssim(got, want, peak))


def psnr(got: np.ndarray, want: np.ndarray, peak: float) -> float:
    """Peak signal-to-noise ratio in dB; identical arrays give PSNR_IDENTICAL (JSON has no infinity)."""
    mse = float(np.mean((got - want) ** 2))
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, float(10 * np.log10(peak**2 / mse)))


def _box(x: np.ndarray, k: int) -> np.ndarray:
    # Mean over every k x k window via an integral image: O(pixels), no window copies.
    c = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(got: np.ndarray, want: np.ndarray, peak: float) -> float:
    """Mean structural similarity over the last two axes (uniform 7x7 windows), averaged over the rest."""
    g = got.reshape(-1, *got.shape[-2:]) if got.ndim >= 2 else got.reshape(1, 1, -1)
    w = want.reshape(g.shape)
    k = min(_SSIM_WINDOW, g.shape[-2], g.shape[-1])
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    scores = []
    for a, b in zip(g, w, strict=True):
        mu_a, mu_b = _box(a, k), _box(b, k)
        var_a, var_b = _box(a * a, k) - mu_a**2, _box(b * b, k) - mu_b**2
        cov = _box(a * b, k) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))


# -- judging (anywhere; pure) --------------------------------------------------------------


def evaluate(suite: HealthSuite, report: HealthReport, *, release_id: str | None = None) -> HealthVerdict:
    """Whether ``report`` passes ``suite``; every failure is named. Pure: no I/O, no clock."""
    failures = []
    if release_id is not None and report.release_id != release_id:
        failures.append(f"the runtime answered for release {report.release_id[:12]}, not {release_id[:12]}")
    by_component: dict[str, list[str]] = {}
    by_index = {r.index: r for r in report.results}
    for i, check in enumerate(suite.inference_checks()):
        result = by_index.get(i)
        label = f"check {i} ({check.type})"
        if result is None or result.type != check.type:
            failures.append(f"{label} did not run")
            continue
        found = [f"{label}: {result.error}"] if result.error else [f"{label}: {why}" for why in _judge(check, result)]
        failures += found
        if found and result.component is not None:
            by_component.setdefault(result.component, []).extend(found)
    return HealthVerdict(ok=not failures, failures=failures, by_component=by_component)


def _judge(check: LlmCheck | ImageCheck | RssCheck, r: CheckResult) -> list[str]:
    out = []
    if isinstance(check, LlmCheck):
        text = r.text or ""
        if check.non_empty and not text.strip():
            out.append("the answer is empty")
        if check.regex is not None and not re.search(check.regex, text):
            out.append(f"the answer {text[:80]!r} does not match {check.regex!r}")
        if check.min_tokens_per_s is not None and (r.tokens_per_s or 0) < check.min_tokens_per_s:
            out.append(f"{r.tokens_per_s or 0:.1f} tokens/s is below {check.min_tokens_per_s:g}")
    elif isinstance(check, ImageCheck):
        if check.min_psnr is not None and (r.psnr is None or r.psnr < check.min_psnr):
            out.append(f"PSNR {r.psnr} dB is below {check.min_psnr:g} dB")
        if check.min_ssim is not None and (r.ssim is None or r.ssim < check.min_ssim):
            out.append(f"SSIM {r.ssim} is below {check.min_ssim:g}")
    elif r.rss_bytes is None or r.rss_bytes > check.max_rss:
        out.append(f"resident memory {r.rss_bytes} bytes exceeds {check.max_rss}")
    max_latency = None if isinstance(check, RssCheck) else check.max_latency_s
    if max_latency is not None and (r.latency_s is None or r.latency_s > max_latency):
        out.append(f"latency {r.latency_s}s exceeds {max_latency:g}s")
    return out
