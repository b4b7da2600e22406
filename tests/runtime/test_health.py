"""The release health suite: measured by the runtime, judged by the agent's pure evaluate()."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.runtime import BackgroundServer, HealthReport, RuntimeClient, evaluate
from edgeship.runtime.health import PSNR_IDENTICAL, CheckResult, psnr, ssim

from .conftest import IMAGE_META, Models, config_for, png_bytes
from .harness import Device


def case_files(tmp_path: Path, models: Models) -> dict[str, tuple[ComponentKind, Path]]:
    """An image case (PNG in, the blurred PNG as reference) and a tensor case (.npy in and out)."""
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(models.denoiser))
    blurred = session.run(None, {"image": picture.transpose(2, 0, 1)[None].astype(np.float32) / 255})[0]
    files = {"in.png": png_bytes(picture), "noisy-ref.png": png_bytes(picture),
             "ref.png": png_bytes(np.clip(np.rint(blurred[0].transpose(1, 2, 0) * 255), 0, 255))}
    x = rng.random((1, 3, 32, 32), np.float32)
    for name, array in (("in.npy", x), ("ref.npy", session.run(None, {"image": x})[0])):
        out = io.BytesIO()
        np.save(out, array)
        files[name] = out.getvalue()
    result = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        result[name.replace(".", "-")] = (ComponentKind.FILE, tmp_path / name)
    return result


def install_with_suite(device: Device, models: Models, tmp_path: Path, checks: list[dict]) -> str:
    files = {"llm": (ComponentKind.GGUF, models.llama_a), "denoiser": (ComponentKind.ONNX, models.denoiser),
             **case_files(tmp_path, models)}
    return device.install("1.0.0", files, meta={"denoiser": {"image": IMAGE_META}}, health=HealthSuite(checks=tuple(checks)))


GOOD = [
    {"type": "llm", "prompt": "Hello", "max_tokens": 4, "regex": "(?s).+", "max_latency_s": 60},
    {"type": "llm", "prompt": "Hi", "chat": True, "max_tokens": 4, "min_tokens_per_s": 0.01},
    {"type": "image", "input": "in-png", "reference": "ref-png", "min_psnr": 40, "min_ssim": 0.99},
    {"type": "image", "component": "denoiser", "input": "in-npy", "reference": "ref-npy", "min_psnr": 60},
    {"type": "max_rss", "max_rss": 8 * 1024**3},
]


def test_a_good_release_passes_its_trial(device: Device, models: Models, tmp_path: Path) -> None:
    release_id = install_with_suite(device, models, tmp_path, GOOD)
    manifest = device.store.manifest(release_id)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        report = client.health()
        verdict = client.trial(manifest, release_id)
    assert verdict.ok, verdict.failures
    assert verdict.reason is None
    assert [r.type for r in report.results] == ["llm", "llm", "image", "image", "max_rss"]
    assert report.results[0].tokens and report.results[0].tokens_per_s > 0
    assert report.results[2].psnr > 40 and report.results[2].ssim > 0.99
    assert report.results[3].psnr == PSNR_IDENTICAL  # the tensor path is exact
    assert 0 < report.results[4].rss_bytes == report.rss_bytes


def test_a_bad_release_fails_with_every_reason(device: Device, models: Models, tmp_path: Path) -> None:
    checks = [
        {"type": "llm", "prompt": "Hello", "max_tokens": 4, "regex": "^never this$", "min_tokens_per_s": 1e9},
        {"type": "llm", "prompt": "Hi", "max_tokens": 2, "max_latency_s": 1e-9},
        {"type": "image", "input": "in-png", "reference": "noisy-ref-png", "min_psnr": 60, "min_ssim": 0.999},
        {"type": "image", "input": "in-png", "reference": "missing"},
        {"type": "llm", "component": "denoiser", "prompt": "Hi"},
        {"type": "max_rss", "max_rss": 1024},
    ]
    release_id = install_with_suite(device, models, tmp_path, checks)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        verdict = client.trial(device.store.manifest(release_id), release_id)
    assert not verdict.ok
    text = verdict.reason or ""
    for expected in ("check 0 (llm): the answer", "does not match '^never this$'", "tokens/s is below 1e+09",
                     "check 1 (llm): latency", "check 2 (image): PSNR", "check 2 (image): SSIM",
                     "check 3 (image): health check names component 'missing'", "check 4 (llm): no text model 'denoiser'",
                     "check 5 (max_rss): resident memory"):
        assert expected in text, text
    assert len(verdict.failures) == 8


def test_trial_fails_when_the_runtime_is_down(device: Device, models: Models, tmp_path: Path) -> None:
    release_id = install_with_suite(device, models, tmp_path, GOOD[:1])
    with BackgroundServer(config_for(device)) as server:
        url = server.url
    with RuntimeClient(device.root, url, timeout_s=2) as client:
        verdict = client.trial(device.store.manifest(release_id), release_id)
    assert not verdict.ok and "cannot reach the runtime" in (verdict.reason or "")


def test_evaluate_is_pure_and_strict() -> None:
    suite = HealthSuite(checks=({"type": "llm", "prompt": "x", "regex": "ok"}, {"type": "max_rss", "max_rss": 100}))
    report = HealthReport(release_id="a" * 64, rss_bytes=50, results=[CheckResult(index=0, type="llm", text="ok!")])
    verdict = evaluate(suite, report, release_id="a" * 64)
    assert verdict.failures == ["check 1 (max_rss) did not run"]
    verdict = evaluate(suite, report.model_copy(update={"results": [*report.results, CheckResult(index=1, type="max_rss", rss_bytes=99)]}),
                       release_id="b" * 64)
    assert verdict.failures == [f"the runtime answered for release {'a' * 12}, not {'b' * 12}"]
    empty = CheckResult(index=0, type="llm", text="  ")
    assert "the answer is empty" in evaluate(suite, report.model_copy(update={"results": [empty]})).failures[0]


def test_evaluate_names_the_model_behind_each_failure() -> None:
    """The trial's CPU fallback moves the models whose checks failed: evaluate groups failures by the model that answered."""
    suite = HealthSuite(checks=({"type": "llm", "prompt": "x", "regex": "ok"}, {"type": "llm", "prompt": "y", "regex": "ok"},
                                {"type": "image", "input": "a", "reference": "b", "min_psnr": 40},
                                {"type": "max_rss", "max_rss": 100}))
    report = HealthReport(release_id="a" * 64, rss_bytes=500, results=[
        CheckResult(index=0, type="llm", component="llm", text="no"), CheckResult(index=1, type="llm", component="llm", text="ok"),
        CheckResult(index=2, type="image", component="denoiser", psnr=12.0),
        CheckResult(index=3, type="max_rss", rss_bytes=500)])
    verdict = evaluate(suite, report)
    assert len(verdict.failures) == 3
    assert verdict.by_component == {"llm": [verdict.failures[0]], "denoiser": [verdict.failures[1]]}
    assert "PSNR 12.0 dB is below 40 dB" in verdict.by_component["denoiser"][0]


def test_the_runtime_says_which_model_answered_each_check(device: Device, models: Models, tmp_path: Path) -> None:
    release_id = install_with_suite(device, models, tmp_path, GOOD)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        report = client.health()
    assert report.release_id == release_id
    assert [r.component for r in report.results] == ["llm", "llm", "denoiser", "denoiser", None]


def test_quality_measures() -> None:
    a = np.random.default_rng(0).random((3, 16, 16))
    assert psnr(a, a, 1.0) == PSNR_IDENTICAL and ssim(a, a, 1.0) == pytest.approx(1.0)
    noisy = a + np.random.default_rng(1).normal(0, 0.1, a.shape)
    assert 15 < psnr(noisy, a, 1.0) < 25  # 20 dB for sigma 0.1 on a unit range
    # Structure of a uniform signal (variance 1/12) under noise of variance s^2: about 2v/(2v + s^2).
    assert ssim(noisy, a, 1.0) == pytest.approx(0.94, abs=0.02)
    assert ssim(a + np.random.default_rng(1).normal(0, 0.3, a.shape), a, 1.0) == pytest.approx(0.65, abs=0.05)


@pytest.mark.parametrize("check, problem", [
    ({"type": "llm"}, "prompt"),
    ({"type": "llm", "prompt": "x", "regex": "("}, "does not compile"),
    ({"type": "image", "input": "a"}, "reference"),
    ({"type": "max_rss", "max_rss": 0}, "greater than 0"),
    ({"type": "gpu_temp"}, "does not match any of the expected tags"),
])
def test_manifest_refuses_bad_checks(check: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        HealthSuite(checks=(check,))


def test_old_manifests_keep_their_release_id() -> None:
    # checks stay dicts: a suite without inference checks serializes exactly as before.
    assert HealthSuite().model_dump(mode="json") == {"command": None, "timeout_s": 60.0, "checks": []}
