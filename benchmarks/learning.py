"""On-device learning benchmark: LoRA adapter swaps on the real Gemma 3 270M base, and adapter update sizes.

    .venv/bin/python benchmarks/learning.py [--swaps 30] [--rank 8] [--tokens 4] [--threads 2]

Fetches the real model (tests/helpers/real_model.py), generates two rank-``--rank`` LoRA
adapters for it (attn_q/attn_v, llama.cpp's GGUF adapter format), installs a release of the
base and both adapters into a device data dir, and a second release of the base alone; serves
them with a real uvicorn on a free loopback port and measures:

1. adapter swap: ``POST /admin/adapters`` changes the default adapters (cycling one, the
   other, none) while two clients send ``--tokens``-token completions without pause; it
   returns once they are attached to the base, so its time includes waiting for the
   generation in flight. The next completion's first token is checked against each setting's
   known one; failed requests over all swaps are counted. For scale: the same swaps with no
   request in flight (the attach itself), and the completions' own latency under that load;
2. the baseline, in the same run: a hot swap of the release (``POST /admin/swap``), which
   reloads the base, p50;
3. update size: what a device downloads for an adapter update (the signed delta when it
   saves enough, else the file) when every weight changed and when one layer was retrained,
   against the full model file.

``--part training`` (also part of the default ``all``): on-device fine-tuning with llama.cpp's
trainer (edgeship.learn) on the generated tiny F32 llama and ``--records`` README paragraphs:
optimizer steps per second (one step = one 256-token window), training loss and held-out
perplexity before and after, and the weight update's size against the full model file (the
baseline: shipping the whole tuned model), for full fine-tuning and for training only the
``ffn_down`` tensors; then the real Gemma 3 270M, which is Q4_K_M and so not trainable (the
job says why).

``--part federated --agents N`` (not in ``all``: it takes minutes) measures a federated round's
wall time with N real agent processes (each fine-tuning the tiny F32 llama on its own text,
uploading its delta) from ``federated start`` to the round's candidate, against one agent's
round alone in the same run (the baseline), and the update size against the model's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeship.delta import make_patch  # noqa: E402
from edgeship.errors import LearnError  # noqa: E402
from edgeship.learn.job import run_job  # noqa: E402
from edgeship.learn.trainer import TrainOptions  # noqa: E402
from edgeship.release.manifest import BASE_META, ComponentKind  # noqa: E402
from edgeship.runtime import BackgroundServer, RuntimeClient, RuntimeConfig  # noqa: E402
from edgeship.release.deltas import MIN_SAVING  # noqa: E402
from edgeship.samples.llama import write_tiny_llama  # noqa: E402
from edgeship.samples.lora import retrain_tensor, write_lora  # noqa: E402
from edgeship.store.digest import hash_file  # noqa: E402
from tests.helpers.real_model import fetch  # noqa: E402
from tests.runtime.harness import Device, Load  # noqa: E402

PROMPT = "The best thing about small devices is"
# The load sends another prompt: llama-cpp-python reuses the cache of a prompt's common prefix, and
# a prompt evaluated in one batch or token by token gives slightly different numbers, which an
# adapter can turn into another token. Probes of PROMPT after LOAD_PROMPT are always evaluated whole,
# and check one token: the adapters here are random, and later tokens of such a model are chaotic.
LOAD_PROMPT = "Every morning the sensor"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def complete(http: httpx.Client, model: str, tokens: int, prompt: str = PROMPT) -> str:
    reply = http.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0})
    reply.raise_for_status()
    return reply.json()["choices"][0]["text"]


def adapter_swaps(args: argparse.Namespace, server: BackgroundServer, client: RuntimeClient) -> dict[str, float]:
    http = httpx.Client(base_url=server.url, timeout=600)
    expected = {}
    for default, model in (("", "llm"), ("tone", "llm+tone"), ("terse", "llm+terse")):
        complete(http, model, args.tokens, LOAD_PROMPT)
        expected[default] = complete(http, model, 1)
    if len(set(expected.values())) != 3:
        raise SystemExit(f"the adapters do not change the answer: {expected}")
    loaded = server.runtime.host.current
    idle = []  # no generation in flight: the attach itself, through the admin API
    for i in range(args.swaps):
        started = time.perf_counter()
        client.adapters(("tone", "terse", "")[i % 3])
        idle.append((time.perf_counter() - started) * 1000)
    times: list[float] = []
    body = {"model": "llm", "prompt": LOAD_PROMPT, "max_tokens": args.tokens, "temperature": 0}
    with Load(server.url, prompt=body, predict=False) as load:
        for i in range(args.swaps):
            default = ("tone", "terse", "")[i % 3]
            started = time.perf_counter()
            client.adapters(default)  # returns once they are attached
            times.append((time.perf_counter() - started) * 1000)
            text = complete(http, "llm", 1)
            if text != expected[default]:
                raise SystemExit(f"swap {i} to {default!r} answered {text!r}, expected {expected[default]!r}")
    if server.runtime.host.current is not loaded:
        raise SystemExit("the base was reloaded during adapter swaps")
    failed = [a for a in load.answers if a[2] != 200]
    latency = [(ended - started) * 1000 for started, ended, *_ in load.answers]
    return {"idle_adapter_swap_p50_ms": percentile(idle, 50), "idle_adapter_swap_p99_ms": percentile(idle, 99),
            "request_p50_ms": percentile(latency, 50), "adapter_swaps": args.swaps, "adapter_swap_p50_ms": percentile(times, 50),
            "adapter_swap_p99_ms": percentile(times, 99), "requests_during_adapter_swaps": len(load.answers),
            "failed_requests": len(failed)}


def release_swaps(args: argparse.Namespace, client: RuntimeClient, releases: tuple[str, str]) -> dict[str, float]:
    times = [client.swap(releases[(i + 1) % 2]).swap_seconds * 1000 for i in range(args.release_swaps)]
    client.swap(releases[0])
    return {"release_swap_p50_ms": percentile(times, 50)}


def update_sizes(work: Path, base: Path, rank: int) -> dict[str, object]:
    """Bytes a device downloads for two adapter updates: every weight changed, and one layer retrained."""
    v1 = write_lora(work / "tone-v1.gguf", base, rank=rank, seed=10, std=0.05)
    updates = {"all": write_lora(work / "tone-all.gguf", base, rank=rank, seed=11, std=0.05),
               "layer": retrain_tensor(v1, work / "tone-layer.gguf", "blk.0.attn_v.weight.lora_b")}
    out: dict[str, object] = {"model_bytes": base.stat().st_size, "adapter_bytes": v1.stat().st_size}
    for name, v2 in updates.items():
        patch = work / f"{name}.patch"
        make_patch(v1, v2, patch)
        # The publisher signs a delta only when it saves enough (edgeship.release.deltas); else the file travels.
        delta = patch.stat().st_size
        out[f"update_{name}_delta_bytes"] = delta
        out[f"update_{name}_download_bytes"] = delta if delta <= (1 - MIN_SAVING) * v2.stat().st_size else v2.stat().st_size
    return out


def write_corpus(directory: Path, records: int) -> Path:
    """README paragraphs (real English) as JSONL training records."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    paragraphs = [p.strip() for p in readme.read_text().split("\n\n") if len(p.strip()) > 80]
    directory.mkdir(parents=True)
    with (directory / "text.jsonl").open("w") as f:
        for text in paragraphs[:records]:
            f.write(json.dumps({"text": text}) + "\n")
    return directory


def fine_tune_figures(name: str, base: Path, data: Path, work: Path, options: TrainOptions) -> None:
    try:
        u = run_job(base, data, work, options)
    except LearnError as exc:
        print(f"{name}: not trainable here: {exc}")
        return
    m = u.metrics
    print(f"{name}: {m.samples} records, {m.steps} steps in {m.seconds:.1f} s = {m.steps / m.seconds:.2f} steps/s; "
          f"loss {m.loss_before:.3f} -> {m.loss_after:.3f}, held-out perplexity {m.metric_before:.1f} -> {m.metric_after:.1f}; "
          f"update {u.patch_size:,} B vs model {u.model_size:,} B ({u.patch_size / u.model_size:.1%})")


def training(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = write_tiny_llama(root / "tiny.gguf")
        data = write_corpus(root / "data", args.records)
        fine_tune_figures("tiny llama F32, every tensor", tiny, data, root / "full", TrainOptions(epochs=args.epochs))
        fine_tune_figures("tiny llama F32, ffn_down only", tiny, data, root / "ffn",
                          TrainOptions(epochs=args.epochs, tensors=("ffn_down",)))
        fine_tune_figures("Gemma 3 270M Q4_K_M", fetch(), data, root / "gemma", TrainOptions(epochs=1))


def federated_round(agents: int, work: Path) -> dict[str, float]:
    """Wall time of one federated round with ``agents`` real agents, and with one (the baseline)."""
    import subprocess

    from edgeship.workspace import Workspace
    from tests.agent.harness import Device as Agent, Releases, Server

    ws = Workspace.init(work / "ws", passphrase=None)
    base = write_tiny_llama(work / "base.gguf")
    rel = Releases(ws, base, work / "src")
    rel.publish("1.0.0")
    server = Server.create(ws, work / "server")
    server.start()
    try:
        fleet = [Agent(server, work / f"agent-{i}", rel.root(), f"bench=d{i}", server.enroll_token({"bench": f"d{i}", "fed": "yes"}))
                 for i in range(agents)]
        server.assign("llm@1.0.0", tag="fed=yes")
        for a in fleet:
            if a.run().returncode != 0 or a.version() != "1.0.0":
                raise SystemExit("an agent did not install the base release")
        out: dict[str, float] = {"model_bytes": base.stat().st_size}
        for label, members in (("one", fleet[:1]), ("all", fleet)):
            target = ",".join(f"bench=d{i}" for i in range(len(members)))
            started = time.perf_counter()
            run = server.admin("POST", "/v1/admin/federated", {"release": "llm@1.0.0", "target": target, "min_participants": len(members),
                                                                "local_steps": 1, "max_norm": 1e6})
            procs = [subprocess.Popen(a.command("--once", "--learn-data", str(write_corpus(work / f"text-{label}-{i}", 10))),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i, a in enumerate(members)]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("an agent failed its federated round")
            (entry,) = server.admin("GET", f"/v1/admin/federated/{run['id']}")["rounds"]
            out[f"round_{label}_s"] = time.perf_counter() - started
            if not entry["used"] or entry["accepted"] != len(members):
                raise SystemExit(f"the round was not used: {entry}")
            out[f"update_{label}_mean_bytes"] = sum(entry["update_bytes"]) / len(entry["update_bytes"])
        out["agents"] = agents
        out["round_all_vs_one"] = out["round_all_s"] / out["round_one_s"]
        out["update_vs_model"] = out["update_all_mean_bytes"] / out["model_bytes"]
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--release-swaps", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--part", choices=("all", "adapters", "training", "federated"), default="all")
    parser.add_argument("--records", type=int, default=40, help="training records (README paragraphs)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--agents", type=int, default=8, help="agents in the federated round (--part federated)")
    args = parser.parse_args()
    if args.part in ("all", "adapters"):
        adapters(args)
    if args.part in ("all", "training"):
        training(args)
    if args.part == "federated":
        federated(args)


def federated(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fed = federated_round(args.agents, Path(tmp))
    print(json.dumps(fed, indent=2))
    print(f"federated round with {fed['agents']:.0f} agents: {fed['round_all_s']:.1f} s wall, start to candidate "
          f"(one agent alone: {fed['round_one_s']:.1f} s, x{fed['round_all_vs_one']:.2f}); mean update "
          f"{fed['update_all_mean_bytes']:,.0f} bytes ({fed['update_vs_model']:.0%} of the {fed['model_bytes']:,.0f}-byte model)")


def adapters(args: argparse.Namespace) -> None:
    base = fetch()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        digest = str(hash_file(base)[0])
        device = Device(work / "device")
        files = {"llm": (ComponentKind.GGUF, base)}
        for i, name in enumerate(("tone", "terse")):
            files[name] = (ComponentKind.LORA, write_lora(work / f"{name}.gguf", base, rank=args.rank, seed=i, std=0.1))
        with_adapters = device.install("1.0.0", files, meta={n: {BASE_META: digest} for n in ("tone", "terse")})
        plain = device.install("2.0.0", {"llm": (ComponentKind.GGUF, base)}, make_current=False)
        config = RuntimeConfig(data_dir=device.root, threads=args.threads, n_ctx=512)
        with BackgroundServer(config) as server, RuntimeClient(device.root, server.url) as client:
            results = adapter_swaps(args, server, client)
            results.update(release_swaps(args, client, (with_adapters, plain)))
        results.update(update_sizes(work, base, args.rank))
    results["adapter_swap_vs_release_swap"] = results["adapter_swap_p50_ms"] / results["release_swap_p50_ms"]
    for name in ("all", "layer"):
        results[f"update_{name}_vs_model"] = results[f"update_{name}_download_bytes"] / results["model_bytes"]
    print(json.dumps(results, indent=2))
    print(f"adapter swap p50 {results['adapter_swap_p50_ms']:.0f} ms, p99 {results['adapter_swap_p99_ms']:.0f} ms "
          f"under load (completion p50 {results['request_p50_ms']:.0f} ms), idle p50 "
          f"{results['idle_adapter_swap_p50_ms']:.1f} ms (release hot swap reloading the base: "
          f"p50 {results['release_swap_p50_ms']:.0f} ms); "
          f"{results['failed_requests']} of {results['requests_during_adapter_swaps']} requests failed")
    print(f"adapter update downloads: every weight changed {results['update_all_download_bytes']:,} bytes "
          f"({results['update_all_vs_model']:.2%} of the {results['model_bytes']:,}-byte model), one layer retrained "
          f"{results['update_layer_download_bytes']:,} bytes ({results['update_layer_vs_model']:.3%})")


if __name__ == "__main__":
    main()
