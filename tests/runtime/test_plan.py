"""The backend plan: pure logic for every catalog profile, and for real on this machine's libraries."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from edgeship.cli.main import run
from edgeship.formats.facts import ModelFacts
from edgeship.optimize.memory import estimate_memory
from edgeship.optimize.profiles import Profile, load_profiles
from edgeship.errors import RuntimeBackendError
from edgeship.runtime import BackgroundServer, RuntimeClient
from edgeship.runtime.backend import BackendOptions
from edgeship.runtime.device import device_facts
from edgeship.runtime.fallbacks import FILE as FALLBACKS
from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.runtime.health import evaluate, run_suite
from edgeship.runtime.plan import (ALL_LAYERS, CPU_PROVIDER, GPU_ACCELERATORS, PROVIDERS, SESSION_CONFIG, BackendPlan,
                                   DeviceFacts, cpu_fallback, plan_gguf, plan_onnx)
from edgeship.runtime.release import load_release, prepare_release
from tests.helpers import gelu

from .conftest import Models, config_for, standard_release
from .harness import Device

GIB = 1 << 30
# Gemma 3 270M Q4_K_M's shape, and a 7B model's.
SMALL = ModelFacts(arch="gemma3", n_layer=18, n_embd=640, n_head=4, n_head_kv=1, head_dim_k=256, head_dim_v=256,
                   n_ff=2048, n_vocab=262144, ctx_train=32768, n_params=268_000_000, weight_bytes=253_000_000,
                   file_type="Q4_K_M")
BIG = ModelFacts(arch="llama", n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, head_dim_k=128, head_dim_v=128,
                 n_ff=11008, n_vocab=32000, ctx_train=4096, n_params=6_700_000_000, weight_bytes=4_080_000_000,
                 file_type="Q4_K_M")
EVERY_PROVIDER = tuple({p for ps in PROVIDERS.values() for p in ps}) + (CPU_PROVIDER,)


def facts_of(profile: Profile, *, gpu_offload: bool = True, providers: tuple[str, ...] = EVERY_PROVIDER) -> DeviceFacts:
    return DeviceFacts(accelerator=profile.accelerator, gpu_memory=profile.vram, unified_memory=profile.unified_memory,
                       memory_budget=profile.usable_bytes, gpu_offload=gpu_offload, onnx_providers=providers)


@pytest.mark.parametrize("profile", sorted(load_profiles().values(), key=lambda p: p.name), ids=lambda p: p.name)
def test_every_catalog_profile_gets_a_plan_that_fits_it(profile: Profile) -> None:
    device = facts_of(profile)
    for facts in (SMALL, BIG):
        estimate = estimate_memory(facts, 2048)
        plan = plan_gguf(facts, estimate, device)
        if profile.accelerator not in GPU_ACCELERATORS:
            assert plan.n_gpu_layers == 0 and not plan.accelerated
        elif estimate.model_bytes <= (profile.usable_bytes if profile.unified_memory else (profile.vram or 0)):
            assert plan.n_gpu_layers == ALL_LAYERS, plan.reason
        else:  # too big for the GPU: only the layers that fit, never more than the model has
            assert plan.n_gpu_layers is not None and 0 <= plan.n_gpu_layers < facts.n_layer, plan.reason
        assert plan.reason and plan.providers == ()
        # A llama-cpp-python built for the CPU never offloads, whatever the device has.
        assert plan_gguf(facts, estimate, replace(device, gpu_offload=False)).n_gpu_layers == 0

    onnx = plan_onnx(device)
    assert onnx.providers == (*PROVIDERS.get(profile.accelerator or "", ()), CPU_PROVIDER)
    assert onnx.n_gpu_layers is None and onnx.reason
    assert onnx.session_config == SESSION_CONFIG.get(profile.accelerator or "", {})
    if profile.accelerator == "npu":  # OpenVINO runs on the CPU unless told to use the NPU
        assert onnx.provider_options == {"OpenVINOExecutionProvider": {"device_type": "NPU"}}
    # Only what the installed onnxruntime offers, the CPU always last.
    assert plan_onnx(replace(device, onnx_providers=(CPU_PROVIDER,))).providers == (CPU_PROVIDER,)


def test_gpu_layers_are_sized_by_the_memory_estimate() -> None:
    catalog = load_profiles()
    estimate = estimate_memory(BIG, 2048)
    # 4 GB model, 24 GB card: everything; a 2 GB Jetson: part; a card too small for one layer: none.
    assert plan_gguf(BIG, estimate, facts_of(catalog["x86-desktop-rtx4090"])).n_gpu_layers == ALL_LAYERS
    partial = plan_gguf(BIG, estimate, facts_of(catalog["jetson-nano-2gb"])).n_gpu_layers
    assert partial is not None and 0 < partial < BIG.n_layer
    roomier = plan_gguf(BIG, estimate, facts_of(catalog["jetson-nano-4gb"])).n_gpu_layers
    assert roomier is not None and partial < roomier
    tiny_card = DeviceFacts(accelerator="cuda", gpu_memory=600 << 20, gpu_offload=True)
    assert plan_gguf(BIG, estimate, tiny_card).n_gpu_layers == 0
    unknown = DeviceFacts(accelerator="cuda", gpu_offload=True)
    assert plan_gguf(BIG, estimate, unknown).n_gpu_layers == ALL_LAYERS


def test_this_machine_plans_the_cpu_and_says_why(device: Device, models: Models, capsys: pytest.CaptureFixture) -> None:
    standard_release(device, models)
    facts = device_facts(config_for(device))
    assert CPU_PROVIDER in facts.onnx_providers
    code = run(["runtime", "plan", "--data-dir", str(device.root), "--ctx", "256", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    plans = {c["name"]: c["plan"] for c in report["components"]}
    assert plans["denoiser"]["providers"] == [CPU_PROVIDER] and plans["llm"]["n_gpu_layers"] == 0
    # A CUDA profile on this machine: the plan says what is missing instead of pretending.
    assert run(["runtime", "plan", "--data-dir", str(device.root), "--profile", "jetson-orin-nano", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    plans = {c["name"]: c["plan"] for c in report["components"]}
    assert report["device"]["accelerator"] == "cuda" and report["device"]["unified_memory"] is True
    if not facts.gpu_offload:
        assert "built for the CPU only" in plans["llm"]["reason"]
    if "CUDAExecutionProvider" not in facts.onnx_providers:
        assert plans["denoiser"]["providers"] == [CPU_PROVIDER] and "lacks" in plans["denoiser"]["reason"]
    assert run(["runtime", "plan", "--data-dir", str(device.root)]) == 0
    assert "denoiser" in capsys.readouterr().out


def test_models_and_the_swap_show_the_plan(device: Device, models: Models) -> None:
    standard_release(device, models)
    with BackgroundServer(config_for(device)) as server:
        listed = {m["id"]: m["plan"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert listed["denoiser"]["providers"] == [CPU_PROVIDER] and listed["llm"]["n_gpu_layers"] == 0


def test_a_provider_that_cannot_start_falls_back_to_the_cpu_and_says_so(device: Device, models: Models) -> None:
    standard_release(device, models)
    options = BackendOptions(threads=1, n_ctx=256)
    prepared = prepare_release(device.store.release_dir(device.store.link("current")), options)  # type: ignore[arg-type]
    broken = tuple(replace(p, plan=replace(p.plan, providers=("NoSuchExecutionProvider", CPU_PROVIDER)))
                   if p.component.name == "denoiser" else p for p in prepared.components)
    release = load_release(replace(prepared, components=broken), options)
    try:
        plan = release.backends["denoiser"].plan
        assert plan.providers == (CPU_PROVIDER,)
        assert plan.fallback is not None and "NoSuchExecutionProvider" in plan.fallback
    finally:
        release.close()


def test_profiles_refuse_a_bad_unified_memory_flag(tmp_path: Path) -> None:
    from edgeship.errors import OptimizeError
    from edgeship.optimize.profiles import parse_catalog

    with pytest.raises(OptimizeError, match="unified_memory must be true or false"):
        parse_catalog("profiles: {x: {ram: 1GiB, arch: x86_64, unified_memory: maybe}}", "test")
    parsed = parse_catalog("profiles: {x: {ram: 8GiB, arch: x86_64, accelerator: cuda, vram: 6GiB}}", "test")
    assert parsed["x"].vram == 6 * GIB and parsed["x"].unified_memory is False


def test_a_failed_suite_moves_only_the_accelerated_models_that_failed_it() -> None:
    """The pure decision behind the trial's CPU fallback, and the CPU plan it leads to."""
    cuda = plan_onnx(DeviceFacts(accelerator="cuda", onnx_providers=EVERY_PROVIDER))
    plans = {"llm": BackendPlan(n_gpu_layers=ALL_LAYERS), "half": BackendPlan(n_gpu_layers=9), "denoiser": cuda,
             "cpu": plan_onnx(DeviceFacts()), "fine": BackendPlan(n_gpu_layers=ALL_LAYERS)}
    failures = {"llm": ["check 0 (llm): the answer is empty"], "half": ["check 1 (llm): latency 9s exceeds 1s"],
                "denoiser": ["check 2 (image): PSNR 84.6 dB is below 120 dB"], "cpu": ["check 3 (image): PSNR 3 dB is below 30 dB"],
                "gone": ["check 4 (image): no such model"]}
    moves = cpu_fallback(plans, failures)
    # Not "cpu" (already there: a retry would only repeat), not "fine" (passed), not "gone" (not loaded).
    assert set(moves) == {"llm", "half", "denoiser"}
    assert "all GPU layers" in moves["llm"] and "the answer is empty" in moves["llm"]
    assert "9 GPU layers" in moves["half"]
    assert "TensorrtExecutionProvider, CUDAExecutionProvider" in moves["denoiser"] and "84.6 dB" in moves["denoiser"]
    assert cpu_fallback(plans, {"cpu": failures["cpu"]}) == {} and cpu_fallback(plans, {}) == {}

    moved = {n: p.on_cpu(moves[n]) if n in moves else p for n, p in plans.items()}
    assert moved["denoiser"].providers == (CPU_PROVIDER,) and moved["denoiser"].session_config == {}
    assert moved["llm"].n_gpu_layers == 0 and moved["llm"].fallback == moves["llm"]
    # The suite runs once more on the CPU; if it fails again nothing is left to move: the trial rolls back.
    assert cpu_fallback(moved, failures) == {}
    # The agent reads the plans from the swap's JSON.
    assert all(BackendPlan.from_json(p.to_json()) == p for p in (*plans.values(), *moved.values()))


def test_an_accelerated_plan_that_fails_the_suite_passes_it_on_the_cpu(device: Device, tmp_path: Path) -> None:
    """Real onnxruntime sessions (see tests.helpers.gelu for how this CPU-only machine gets an
    accelerated plan): the suite fails on it, names the model, and passes once it is on the CPU."""
    probe, exact = gelu.write_probe(tmp_path)
    device.install("1.0.0", {"gelu": (ComponentKind.ONNX, gelu.write_gelu(tmp_path / "gelu.onnx")),
                             "probe": (ComponentKind.FILE, probe), "exact": (ComponentKind.FILE, exact)},
                   health=HealthSuite(checks=(gelu.check(),)))
    options = BackendOptions(threads=1)
    prepared = prepare_release(device.store.release_dir(device.store.link("current")), options)  # type: ignore[arg-type]
    accelerated = replace(prepared, components=tuple(replace(p, plan=gelu.ACCELERATED) for p in prepared.components))

    release = load_release(accelerated, options)
    try:
        assert release.backends["gelu"].plan.providers == gelu.ACCELERATED.providers  # onnxruntime really took both
        verdict = evaluate(release.manifest.health, run_suite(release))
        plans = {n: b.plan for n, b in release.backends.items()}
    finally:
        release.close()
    assert not verdict.ok and "PSNR" in verdict.by_component["gelu"][0]
    moves = cpu_fallback(plans, verdict.by_component)
    assert set(moves) == {"gelu"} and "AzureExecutionProvider" in moves["gelu"]

    release = load_release(accelerated.on_cpu(moves), options)
    try:
        plan = release.backends["gelu"].plan
        assert plan.providers == (CPU_PROVIDER,) and plan.session_config == {} and plan.fallback == moves["gelu"]
        assert evaluate(release.manifest.health, run_suite(release)).ok
    finally:
        release.close()


def test_the_admin_swap_moves_models_to_the_cpu_and_back(device: Device, models: Models,
                                                         capsys: pytest.CaptureFixture) -> None:
    release_id = standard_release(device, models)
    (device.root / FALLBACKS).write_text("{not json")  # a damaged file costs the remembered moves, not the start
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        with pytest.raises(RuntimeBackendError, match="has no model 'nope' to move to the CPU"):
            client.swap(release_id, cpu={"nope": "why"})
        assert client.swap(release_id).changed is False  # nothing was remembered from the refused request
        moved = client.swap(release_id, cpu={"denoiser": "its accelerator failed check 0"})
        assert moved.changed and moved.plans["denoiser"]["fallback"] == "its accelerator failed check 0"
        assert moved.plans["llm"]["fallback"] is None
        assert client.swap(release_id).changed is False  # None: as last asked
        # The explain command shows what the runtime serves.
        assert run(["runtime", "plan", "--data-dir", str(device.root), "--json"]) == 0
        explained = {c["name"]: c["plan"] for c in json.loads(capsys.readouterr().out)["components"]}
        assert explained["denoiser"]["fallback"] == "its accelerator failed check 0"
        again = client.swap(release_id, cpu={})  # every model as planned again
        assert again.changed and again.plans["denoiser"]["fallback"] is None
