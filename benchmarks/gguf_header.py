"""How long reading a GGUF header takes: edgeship.formats against gguf.GGUFReader.

On the real model (Gemma 3 270M Q4_K_M, 262,144-token vocabulary) by default, or on any
GGUF given. Prints the median of --runs reads with edgeship's reader (the header alone, and
the ModelFacts the estimator and runtime use), one read with gguf's GGUFReader (the baseline,
also what the package used before), and checks both agree on every tensor and the data offset.
Goal: < 0.5 s for the real model's header.

Run: python benchmarks/gguf_header.py [MODEL.gguf] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edgeship.formats import read_facts, read_header


def _seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, nargs="?", help="a GGUF file (default: the real model)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.helpers.real_model import real_model_path

        args.model = real_model_path()
    path: Path = args.model

    import gguf  # imported before timing: its import is not part of either reader's cost

    header_s = _seconds(lambda: read_header(path), args.runs)
    facts_s = _seconds(lambda: read_facts(path), args.runs)
    start = time.perf_counter()
    reader = gguf.GGUFReader(path)
    baseline_s = time.perf_counter() - start

    header = read_header(path)
    ours = [(t.name, t.offset, t.n_bytes, t.type_name) for t in header.tensors]
    theirs = [(t.name, int(t.data_offset), int(t.n_bytes), t.tensor_type.name) for t in reader.tensors]
    agree = ours == theirs and header.data_offset == reader.data_offset
    facts = read_facts(path)
    print(f"model: {path.name}, {path.stat().st_size:,} bytes, {facts.arch}, {len(header.tensors)} tensors, "
          f"{facts.n_vocab:,}-token vocabulary, header {header.data_offset:,} bytes")  # fmt: skip
    print(f"edgeship read_header (median of {args.runs}): {header_s:.3f} s")
    print(f"edgeship read_facts  (median of {args.runs}): {facts_s:.3f} s")
    print(f"gguf.GGUFReader (baseline, 1 run):      {baseline_s:.3f} s  ({baseline_s / header_s:.0f}x slower)")
    print(f"tensor infos and data offset agree with GGUFReader: {'yes' if agree else 'NO'}")
    print(f"goal < 0.5 s: {'met' if header_s < 0.5 else 'NOT met'}")
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
