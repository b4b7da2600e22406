"""Optimizer figures on a generated llama model of 100M+ parameters.

Per quantization type: llama.cpp quantization time and source MB/s, the memory estimate
against the RSS a fresh process really reaches after filling the context, perplexity and
KL divergence from F32 on text from the Markov chain the model carries (see
edgeship/optimize/bigram.py), and prompt/generation tokens per second on this machine.

Run: python benchmarks/optimize.py [--layers 10 --embd 1024 --ff 2816] [--ctx 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgeship.optimize.bigram import Chain, write_chain_model
from edgeship.optimize.evaluate import measure_rss
from edgeship.formats import read_facts
from edgeship.optimize.memory import estimate_memory
from edgeship.optimize.pipeline import Hooks, optimize_gguf
from edgeship.samples.llama import TinyLlama

MiB = 1 << 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--embd", type=int, default=1024, help="multiple of 256 (K-quant blocks)")
    ap.add_argument("--ff", type=int, default=2816, help="multiple of 256 (K-quant blocks)")
    ap.add_argument("--ctx", type=int, default=1024, help="context for the memory estimate and measurement")
    ap.add_argument("--eval-letters", type=int, default=1000)
    ap.add_argument("--eval-ctx", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default=None, help="comma-separated (default: Q8_0…Q2_K)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        work = args.dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        spec = TinyLlama(n_embd=args.embd, n_layer=args.layers, n_head=args.embd // 64, n_head_kv=args.embd // 256,
                         n_ff=args.ff, n_ctx=4096, name="edgeship-bench")  # fmt: skip
        chain = Chain()
        t0 = time.perf_counter()
        source = write_chain_model(work / "bench.gguf", spec, chain)
        facts = read_facts(source)
        print(f"model: {facts.n_params / 1e6:.1f}M parameters, {args.layers} layers x {args.embd} wide, FFN {args.ff}, "
              f"{source.stat().st_size / 1e6:.0f} MB F32 (written in {time.perf_counter() - t0:.1f}s)")  # fmt: skip
        hooks = Hooks(status=lambda s: print(f"  {s}", flush=True), quantize_start=lambda q: print(f"  quantizing {q}", flush=True))
        report = optimize_gguf(
            source,
            work / "variants",
            [],
            types=args.types.split(",") if args.types else None,
            ctx=args.ctx,
            eval_text=chain.sample(args.eval_letters),
            eval_ctx=args.eval_ctx,
            n_threads=args.threads,
            hooks=hooks,
        )
        print(f"\nctx {args.ctx}, {args.threads} threads, eval {args.eval_letters} letters in a {args.eval_ctx}-token window; "
              f"best possible perplexity exp(H) = {2.718281828 ** chain.entropy_rate():.3f}\n")  # fmt: skip
        header = ("type", "size MB", "bits/w", "quant s", "MB/s", "est MiB", "RSS MiB", "est err", "PPL", "KL", "top-1", "prompt t/s", "gen t/s")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for v in report.variants:
            estimate = estimate_memory(read_facts(v.path), args.ctx)
            measured = measure_rss(v.path, args.ctx, n_threads=args.threads)
            error = estimate.model_bytes / measured.model_bytes - 1
            m = v.metrics
            row = (
                v.name + (" (src)" if v.source else ""),
                f"{v.file_bytes / 1e6:.1f}",
                f"{v.bits_per_weight:.2f}",
                "-" if v.quantize_seconds is None else f"{v.quantize_seconds:.1f}",
                "-" if v.quantize_mb_per_s is None else f"{v.quantize_mb_per_s:.0f}",
                f"{estimate.model_bytes / MiB:.0f}",
                f"{measured.model_bytes / MiB:.0f}",
                f"{error:+.1%}",
                f"{v.perplexity:.4f}",
                f"{v.kl_divergence:.5f}",
                f"{m['top1_agreement']:.1%}",
                f"{m['prompt_tokens_per_s']:.0f}",
                f"{m['generation_tokens_per_s']:.1f}",
            )
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
