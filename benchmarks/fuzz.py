"""Long fuzz runs of what tests/fuzz runs briefly in CI, with figures: inputs tried, crashes.

Parsers (tests/fuzz/targets.py: GGUF, ONNX and safetensors headers through release
inspection and model facts, JSON configs, manifests, delta make and delta apply): each
target for --seconds under atheris (libFuzzer, coverage-guided, edgeship's bytecode
instrumented; starting from the target's seed file), then for the same time under the
baseline, hypothesis mutating the same seed without coverage feedback (the CI tests'
strategy). The API: schemathesis against a real server on SQLite (and PostgreSQL when
EDGESHIP_TEST_DATABASE_URL is set), --api-examples per operation and generation mode,
every request sent without credentials, as an operator and as a device.

A crash is any exception other than an EdgeshipError with a message, or a wrong result
(a patch that rebuilds other bytes); crashing inputs are saved under --out.

Run: python benchmarks/fuzz.py [--seconds 30] [--api-examples 40] [--targets gguf,onnx] [--parts parsers,api] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def crash_key(exc: BaseException) -> str:
    """Exception type and the innermost edgeship frame: one key per distinct crash."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "edgeship" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


class Crashes:
    def __init__(self, out: Path, name: str) -> None:
        self.out, self.name, self.seen = out, name, {}

    def record(self, exc: BaseException, data: bytes) -> None:
        key = crash_key(exc)
        if key not in self.seen:
            path = self.out / f"crash-{self.name}-{len(self.seen)}.bin"
            path.write_bytes(data)
            self.seen[key] = str(path)


def atheris_child(name: str, seconds: int, out: Path) -> None:
    """Runs in its own process: libFuzzer owns it until --seconds are up, then exits."""
    import atheris

    with atheris.instrument_imports(include=["edgeship"]):
        from tests.fuzz.targets import Targets
    work = Path(tempfile.mkdtemp())
    targets = Targets(work)
    corpus = work / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(targets.seed(name))
    crashes = Crashes(out, name)
    report = out / f"atheris-{name}.json"

    def one(data: bytes) -> None:
        try:
            targets.run[name](data)
        except Exception as exc:  # noqa: BLE001 - recorded, and fuzzing goes on to find more
            crashes.record(exc, data)
            report.write_text(json.dumps(crashes.seen))

    report.write_text("{}")
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", "-max_len=1048576", "-len_control=0", str(corpus)], one)
    atheris.Fuzz()


def run_atheris(name: str, seconds: int, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--seconds", str(seconds), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    runs = re.findall(r"Done (\d+) runs", proc.stderr) or re.findall(r"^#(\d+)", proc.stderr, re.M)
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    report = out / f"atheris-{name}.json"
    if not report.exists():
        raise RuntimeError(f"atheris did not start for {name}:\n{proc.stderr[-2000:]}")
    return {"inputs": int(runs[-1]) if runs else 0, "edges": int(cov[-1]) if cov else 0, "crashes": json.loads(report.read_text())}


def run_hypothesis(name: str, seconds: int, out: Path) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings

    from tests.fuzz.strategies import mutated_bytes
    from tests.fuzz.targets import Targets

    targets = Targets(Path(tempfile.mkdtemp()))
    crashes = Crashes(out, f"{name}-hypothesis")
    inputs = 0
    deadline = time.monotonic() + seconds

    # Short random batches until the time is up: a run cannot be stopped from inside.
    @settings(max_examples=100, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(mutated_bytes(targets.seed(name), targets.hot(name)))
    def batch(data: bytes) -> None:
        nonlocal inputs
        inputs += 1
        try:
            targets.run[name](data)
        except Exception as exc:  # noqa: BLE001 - recorded, and fuzzing goes on to find more
            crashes.record(exc, data)

    while time.monotonic() < deadline:
        batch()
    return {"inputs": inputs, "crashes": crashes.seen}


def run_api(examples: int, database: str) -> dict:
    from tests.fuzz.api import api_under_test, fuzz_api
    from tests.helpers.server import postgres_schema

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if database == "postgresql":
            with postgres_schema() as url, api_under_test(Path(tmp), url) as api:
                report = fuzz_api(api, examples, seed=int(time.time()))
        else:
            with api_under_test(Path(tmp)) as api:
                report = fuzz_api(api, examples, seed=int(time.time()))
    return {"requests": report.requests, "failures": list(report.failures), "seconds": round(time.monotonic() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30, help="per parser target and engine")
    parser.add_argument("--api-examples", type=int, default=40, help="per API operation and generation mode")
    parser.add_argument("--targets", default="", help="comma-separated parser targets (default: all)")
    parser.add_argument("--parts", default="parsers,api", help="what to fuzz: parsers, api or both")
    parser.add_argument("--out", type=Path, default=None, help="where crashing inputs are saved")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeship-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        atheris_child(args.child, args.seconds, out)
        return
    from tests.fuzz.targets import NAMES  # not before the child instruments edgeship's imports

    parts = args.parts.split(",")
    names = (args.targets.split(",") if args.targets else list(NAMES)) if "parsers" in parts else []
    print(f"{'target':<24} {'engine':<22} {'inputs':>9} {'inputs/s':>9} {'edges':>6} {'crashes':>8}")
    total_inputs = total_crashes = 0
    for name in names:
        for engine, result in (("atheris (coverage)", run_atheris(name, args.seconds, out)),
                               ("hypothesis (baseline)", run_hypothesis(name, args.seconds, out))):
            total_inputs += result["inputs"]
            total_crashes += len(result["crashes"])
            edges = result.get("edges", "")
            print(f"{name:<24} {engine:<22} {result['inputs']:>9,} {result['inputs'] / args.seconds:>9,.0f} {edges:>6} {len(result['crashes']):>8}",
                  flush=True)
            for key, path in result["crashes"].items():
                print(f"    crash: {key} (input: {path})")
    databases = ["sqlite"] + (["postgresql"] if os.environ.get("EDGESHIP_TEST_DATABASE_URL") else [])
    if "api" not in parts:
        databases = []
    for database in databases:
        api = run_api(args.api_examples, database)
        total_inputs += api["requests"]
        total_crashes += len(api["failures"])
        print(f"{'API (schemathesis)':<24} {database:<22} {api['requests']:>9,} {api['requests'] / api['seconds']:>9,.0f} {'':>6} "
              f"{len(api['failures']):>8}", flush=True)
        for failure in api["failures"]:
            print(f"    failure: {failure}")
    print(f"total: {total_inputs:,} inputs, {total_crashes} crashes; crashing inputs in {out}")


if __name__ == "__main__":
    main()
