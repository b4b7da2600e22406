"""Runtime benchmark on the real model: load, swap, streaming tokens/s, time to first token and RSS,
each against raw llama-cpp-python (or the memory estimate) measured in the same run.

    .venv/bin/python benchmarks/runtime.py [--model PATH] [--tokens 64] [--rounds 7] [--swaps 20]
        [--threads CORES/2] [--ctx 1024]

The model is Gemma 3 270M Q4_K_M (tests/helpers/real_model.py fetches it), or --model. Three
releases of it are installed into a device data dir and served by `edgeship runtime serve` in
its own process on a free loopback port, so the client's work does not share the server's
interpreter: 1.0.0 the model as it is; 2.0.0 the same GGUF with a chat template in the release
(the same bytes: the runtime shares the loaded model); 3.0.0 a GGUF with the template written
into its metadata (other bytes, the same weights: a full load). Figures:

1. load: the runtime's first load (header read, llama.cpp load, chat template check, one-token
   warm-up; from POST /admin/swap's outcome) against raw ``Llama()`` in this process (median of
   ``--rounds`` loads; wall and CPU seconds) and raw ``Llama()`` plus the same one-token warm-up;
2. tokens/s: the same greedy completion streamed through POST /v1/completions (SSE) and through
   ``create_completion(stream=True)``, non-streamed through both too; rounds interleave the four
   so machine noise hits them alike; medians; ratio = runtime / raw; and the CPU time per token
   of each (the runtime's whole process, HTTP included, against this process's), which
   neighbours on the machine disturb less;
3. time to first token, streamed, both ways (medians);
4. swaps under a continuous load of completions, ``--swaps`` each way: 1.0.0 <-> 2.0.0 (shared
   model) and 1.0.0 <-> 3.0.0 (full loads): p50/p99 of the swap (from the call until the old
   release is freed), p50 of each phase (prepare, load, warm-up, until the new release serves,
   drain of the old one's requests, freeing it) and of the swapping thread's CPU time, and how
   many requests failed;
5. RSS: the server's growth over the first load (its process before: no model, llama_cpp not
   imported yet; what importing llama_cpp costs is measured in a fresh interpreter and taken
   off) against the estimate of what loading the model adds; the whole process's RSS against
   the estimate's total, after the first load and after everything above.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeship.formats import read_facts  # noqa: E402
from edgeship.formats.gguf_edit import with_string  # noqa: E402
from edgeship.loopback import free_port  # noqa: E402
from edgeship.optimize.memory import estimate_memory  # noqa: E402
from edgeship.release.bundle import CHAT_TEMPLATE_META  # noqa: E402
from edgeship.release.manifest import ComponentKind  # noqa: E402
from edgeship.runtime import RuntimeClient, SwapOutcome  # noqa: E402
from tests.helpers.real_model import real_model_path  # noqa: E402
from tests.runtime.harness import Device, Load  # noqa: E402

PROMPT = "Q: What is the capital of France?\nA:"
TEMPLATE = "{{ bos_token }}{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def serve(args: argparse.Namespace, device: Device, port: int) -> subprocess.Popen[bytes]:
    code = "from edgeship.cli.main import main; main()"
    cmd = [sys.executable, "-c", code, "runtime", "serve", "--data-dir", str(device.root), "--port", str(port),
           "--threads", str(args.threads), "--ctx", str(args.ctx)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the runtime did not start")
        time.sleep(0.1)


def load_times(args: argparse.Namespace, model: Path) -> dict[str, float]:
    from llama_cpp import Llama

    bare, cpu, warmed = [], [], []
    for _ in range(args.rounds):
        started, cpu_started = time.perf_counter(), time.thread_time()
        llama = Llama(model_path=str(model), n_ctx=args.ctx, n_threads=args.threads, verbose=False)
        bare.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
        llama.create_completion("Hi", max_tokens=1, temperature=0)
        warmed.append(time.perf_counter() - started)
        llama.close()
    return {"raw_load_s": statistics.median(bare), "raw_load_cpu_s": statistics.median(cpu),
            "raw_load_warm_s": statistics.median(warmed)}


def generation(args: argparse.Namespace, model: Path, url: str, server: int) -> dict[str, float]:
    """Tokens/s, CPU time per token (the runtime's: its process ``server``'s, HTTP included; raw: this
    process's) and time to first token, interleaved rounds, medians."""
    from llama_cpp import Llama

    raw = Llama(model_path=str(model), n_ctx=args.ctx, n_threads=args.threads, verbose=False)
    http = httpx.Client(base_url=url, timeout=600)
    body = {"model": "llm", "prompt": PROMPT, "max_tokens": args.tokens, "temperature": 0,
            "stop": []}  # no stop: every round generates the same number of tokens

    def timed(chunks: Iterator[object]) -> tuple[float, float, int]:
        started = time.perf_counter()
        first, n = 0.0, 0
        for _ in chunks:
            n += 1
            if n == 1:
                first = time.perf_counter() - started
        return time.perf_counter() - started, first, n

    def raw_stream() -> tuple[float, float, int]:
        return timed(iter(raw.create_completion(PROMPT, max_tokens=args.tokens, temperature=0, stream=True)))

    def api_stream() -> tuple[float, float, int]:
        def events() -> Iterator[str]:
            with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply:
                for line in reply.iter_lines():
                    if line.startswith("data: {"):
                        yield line
        return timed(events())

    def raw_plain() -> tuple[float, float, int]:
        started = time.perf_counter()
        out = raw.create_completion(PROMPT, max_tokens=args.tokens, temperature=0)
        return time.perf_counter() - started, 0.0, out["usage"]["completion_tokens"]

    def api_plain() -> tuple[float, float, int]:
        started = time.perf_counter()
        out = http.post("/v1/completions", json=body).json()
        return time.perf_counter() - started, 0.0, out["usage"]["completion_tokens"]

    runs: dict[str, Callable[[], tuple[float, float, int]]] = {
        "raw_stream": raw_stream, "api_stream": api_stream, "raw": raw_plain, "api": api_plain}
    for run in runs.values():  # warm caches on both sides
        run()
    tps: dict[str, list[float]] = {k: [] for k in runs}
    ttft: dict[str, list[float]] = {k: [] for k in runs}
    cpu_ms: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(args.rounds):
        # Alternate which side goes first, so neither always runs on a cooler machine.
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in order:
            cpu = (lambda: cpu_seconds(server)) if name.startswith("api") else time.process_time
            cpu_started = cpu()
            seconds, first, n = runs[name]()
            # A stream's last chunk only carries finish_reason: chunks - 1 tokens, after the first one.
            tokens = n - 1 if "stream" in name else n
            tps[name].append(tokens / seconds)
            ttft[name].append(first)
            cpu_ms[name].append(1000 * (cpu() - cpu_started) / n)  # n: the first token's prompt is in it too
    raw.close()
    http.close()
    med = {k: statistics.median(v) for k, v in tps.items()}
    return {"raw_stream_tps": med["raw_stream"], "api_stream_tps": med["api_stream"],
            "stream_ratio": med["api_stream"] / med["raw_stream"],
            "raw_tps": med["raw"], "api_tps": med["api"], "plain_ratio": med["api"] / med["raw"],
            "raw_ttft_ms": 1000 * statistics.median(ttft["raw_stream"]),
            "api_ttft_ms": 1000 * statistics.median(ttft["api_stream"]),
            **{f"{k}_cpu_ms_per_token": statistics.median(v) for k, v in cpu_ms.items()}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PHASES = ("prepare", "load", "warmup", "serving", "drain", "free", "cpu")


def phases(outcome: SwapOutcome) -> dict[str, float]:
    """Where one swap's time went (seconds; see SwapOutcome)."""
    return {p: getattr(outcome, f"{p}_seconds") for p in PHASES}


def swaps(args: argparse.Namespace, url: str, device: Device, releases: tuple[str, str], kind: str) -> dict[str, float]:
    """``--swaps`` swaps back and forth between ``releases`` under a continuous load of completions."""
    outcomes: list[SwapOutcome] = []
    question = {"model": "llm", "prompt": PROMPT, "max_tokens": 3, "temperature": 0}
    with RuntimeClient(device.root, url) as client, Load(url, prompt=question, predict=False) as load:
        for i in range(args.swaps):
            outcomes.append(client.swap(releases[(i + 1) % 2]))
    if any(bool(o.shared) != (kind == "shared") for o in outcomes):
        raise SystemExit(f"{kind} swaps did not all {'share' if kind == 'shared' else 'load'} the model")
    times = [o.swap_seconds for o in outcomes]
    figures = {f"{kind}_swap_p50_s": percentile(times, 50), f"{kind}_swap_p99_s": percentile(times, 99)}
    figures |= {f"{kind}_{p}_p50_s": percentile([phases(o)[p] for o in outcomes], 50) for p in PHASES}
    return figures | {f"{kind}_requests": len(load.answers),
                      f"{kind}_failed_requests": len([a for a in load.answers if a[2] != 200])}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmRSS for the runtime process")


def import_cost() -> int:
    """What importing llama_cpp adds to a fresh interpreter's RSS (the runtime imports it at its first load)."""
    code = ("import pathlib; r = lambda: int(pathlib.Path('/proc/self/statm').read_text().split()[1]); "
            "a = r(); import llama_cpp; print((r() - a) * __import__('os').sysconf('SC_PAGE_SIZE'))")
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF to serve (default: the real test model)")
    parser.add_argument("--tokens", type=int, default=64, help="generated per completion")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--swaps", type=int, default=20)
    # llama-cpp-python's default: half the cores, so the HTTP side has the rest (on a 2-core machine, 1).
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--ctx", type=int, default=1024)
    args = parser.parse_args()
    model = (args.model or real_model_path()).resolve()

    with tempfile.TemporaryDirectory(prefix="edgeship-bench-runtime-") as tmp:
        device = Device(Path(tmp) / "device")
        edited = Path(tmp) / "templated" / model.name
        edited.parent.mkdir()
        with_string(model, edited, "tokenizer.chat_template", TEMPLATE)
        files = {"llm": (ComponentKind.GGUF, model)}
        v1 = device.install("1.0.0", files, make_current=False)
        v2 = device.install("2.0.0", files, meta={"llm": {CHAT_TEMPLATE_META: TEMPLATE}}, make_current=False)
        v3 = device.install("3.0.0", {"llm": (ComponentKind.GGUF, edited)}, make_current=False)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = serve(args, device, port)
        try:
            idle = rss(proc.pid)
            with RuntimeClient(device.root, url) as client:
                first = client.swap(v1)
            loaded, imported = rss(proc.pid), import_cost()
            estimate = estimate_memory(read_facts(model), args.ctx)
            figures: dict[str, object] = {"model": model.name, "model_mib": round(model.stat().st_size / 2**20, 1),
                                          "threads": args.threads, "ctx": args.ctx, "tokens": args.tokens,
                                          "runtime_first_load_s": first.swap_seconds,
                                          **{f"first_load_{p}_s": v for p, v in phases(first).items()},
                                          "rss_model_mib": (loaded - idle - imported) / 2**20,
                                          "rss_llama_cpp_import_mib": imported / 2**20,
                                          "estimate_model_mib": estimate.model_bytes / 2**20,
                                          "rss_model_vs_estimate": (loaded - idle - imported) / estimate.model_bytes - 1,
                                          "rss_loaded_mib": loaded / 2**20, "estimate_mib": estimate.total / 2**20,
                                          "rss_loaded_vs_estimate": loaded / estimate.total - 1}
            figures |= load_times(args, model)
            figures |= generation(args, model, url, proc.pid)
            figures |= swaps(args, url, device, (v1, v2), "shared")
            figures |= swaps(args, url, device, (v1, v3), "full")
            figures |= {"rss_after_swaps_mib": rss(proc.pid) / 2**20}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}, indent=2))
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
