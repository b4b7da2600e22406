"""CLI start-up: wall time, CPU and peak RSS of `edgeship` commands, against an eager baseline.

    python benchmarks/cli.py              # 5 runs per start-up command, 1 of `delta make`
    python benchmarks/cli.py --runs 10 --no-delta

Each command runs through the real `edgeship` script (the console entry point) in its own
process; figures are the median wall and CPU time and the highest peak RSS over the runs.
The baseline is the same entry point after importing every command module first, which is
what `edgeship` did before commands were loaded lazily. `delta make` runs between the real
model (Gemma 3 270M Q4_K_M, 253 MB) and a copy whose metadata differs (general.name).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procstat import Finished, finished  # noqa: E402
from edgeship.cli.main import COMMANDS  # noqa: E402
from tests.helpers.real_model import fetch  # noqa: E402

MB = 1_000_000
SCRIPT = Path(sys.executable).with_name("edgeship")
EAGER = "import sys; from edgeship.cli.main import main; " + "; ".join(
    f"import {m}" for m in dict.fromkeys(e.module for e in COMMANDS.values())) + "; main()"
STARTUP = [["--version"], ["--help"], ["agent", "--help"], ["release", "--help"], ["delta", "make", "--help"],
           ["server", "--help"]]
# Goals (issue 16): command -> (seconds, bytes of peak RSS); None: not a goal.
GOALS: dict[str, tuple[float | None, int | None]] = {"--help": (0.3, 40 * MB), "delta make": (None, 160 * MB)}


def repeat(argv: list[str], runs: int) -> Finished:
    """Median wall and CPU time, highest peak RSS, over ``runs`` runs."""
    done = [finished(argv, env=dict(os.environ)) for _ in range(runs)]
    return Finished(statistics.median(d.wall_s for d in done), statistics.median(d.cpu_s for d in done),
                    max(d.max_rss for d in done))


def metadata_twin(model: Path, dest: Path) -> Path:
    """A copy of a GGUF whose general.name differs in one letter: still a valid GGUF."""
    import gguf

    shutil.copyfile(model, dest)
    reader = gguf.GGUFReader(dest, "r+")
    field = reader.get_field("general.name")
    value = field.parts[field.data[0]]
    value[0] ^= 0x20  # flip the case of the first letter, in place through the memory map
    del reader  # flushes the map
    return dest


def goal(label: str, r: Finished) -> str:
    wall, rss = GOALS.get(label, (None, None))
    parts = []
    if wall is not None:
        parts.append(f"wall ≤ {wall} s {'met' if r.wall_s <= wall else 'MISSED'}")
    if rss is not None:
        parts.append(f"RSS ≤ {rss // MB} MB {'met' if r.max_rss <= rss else 'MISSED'}")
    return ", ".join(parts)


def row(label: str, r: Finished, base: Finished | None) -> str:
    ratio = f"{r.wall_s / base.wall_s:.2f}× / {r.max_rss / base.max_rss:.2f}×" if base else ""
    return f"| {label} | {r.wall_s:.2f} s | {r.cpu_s:.2f} s | {r.max_rss / MB:.0f} MB | " + (
        f"{base.wall_s:.2f} s, {base.max_rss / MB:.0f} MB | {ratio} | " if base else "| | ") + f"{goal(label, r)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Runs per start-up command.")
    parser.add_argument("--no-delta", action="store_true", help="Skip `delta make` on the real model.")
    args = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"{SCRIPT} is missing: install the package (make) first")

    print(f"edgeship start-up, {args.runs} runs each (median wall and CPU, highest peak RSS)")
    print("| command | wall | CPU | peak RSS | eager baseline (wall, RSS) | lazy / eager (wall / RSS) | goal |")
    print("|---|---|---|---|---|---|---|")
    for argv in STARTUP:
        lazy = repeat([sys.executable, str(SCRIPT), *argv], args.runs)
        eager = repeat([sys.executable, "-c", EAGER, *argv], args.runs)
        print(row(" ".join(argv), lazy, eager), flush=True)
    if not args.no_delta:
        model = fetch()
        with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
            twin = metadata_twin(model, Path(tmp) / "twin.gguf")
            made = finished([sys.executable, str(SCRIPT), "delta", "make", str(model), str(twin), "-o",
                             str(Path(tmp) / "p.esd")], env=dict(os.environ))
            print(row("delta make", made, None), flush=True)
            print(f"(patch {Path(tmp, 'p.esd').stat().st_size:,} bytes between {model.stat().st_size:,}-byte files)")


if __name__ == "__main__":
    main()
