"""Delta benchmark: edgeship vs bsdiff4, xdelta3 and `zstd --patch-from` on GGUF model pairs.

    python benchmarks/delta.py --size-mb 200            # all scenarios, all tools
    python benchmarks/delta.py --size-mb 64 --scenarios finetune,metadata

Every encoder and applier runs in its own child process; time is wall clock and peak RSS
is that child's own `ru_maxrss` (os.wait4), so tools are measured the same way. Each
patch is applied and the result compared with the target before its figures count.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procstat import finished  # noqa: E402
from edgeship.delta.codec import code_piece  # noqa: E402
from edgeship.delta.encode import PIECE  # noqa: E402
from edgeship.delta.gguf import regions  # noqa: E402
from edgeship.delta.listing import file_sha256  # noqa: E402
from edgeship.samples.tensorfiles import SCENARIOS, write_gguf_pair  # noqa: E402

MiB = 1024 * 1024
LETTERS = dict(zip(SCENARIOS, "abcdef"))
Command = Callable[[Path, Path, Path], list[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    encode: Command  # (old, new, patch) -> argv
    apply: Command  # (old, patch, out) -> argv
    needs: str | None = None  # executable that must be on PATH


@dataclass(frozen=True)
class Measured:
    seconds: float
    max_rss: int  # bytes


@dataclass(frozen=True)
class Row:
    scenario: str
    tool: str
    patch: int | None = None
    encode: Measured | None = None
    apply: Measured | None = None
    note: str = ""


def _py(code: str) -> Command:
    return lambda a, b, c: [sys.executable, "-c", code, str(a), str(b), str(c)]


def _xdelta(mode: str) -> Command:
    # -B: a source window as large as the file, else xdelta3 only sees the first 64 MiB.
    def argv(a: Path, b: Path, c: Path) -> list[str]:
        window = max(a.stat().st_size, 1 << 20)
        return ["xdelta3", mode, "-f", "-B", str(window), "-s", str(a), str(b), str(c)]

    return argv


TOOLS = [
    Tool(
        "edgeship",
        _py("import sys; from edgeship.delta import make_patch as f; f(*sys.argv[1:])"),
        _py("import sys; from edgeship.delta import apply_patch as f; f(*sys.argv[1:])"),
    ),
    Tool(
        "bsdiff4",
        _py("import sys, bsdiff4; bsdiff4.file_diff(*sys.argv[1:])"),
        _py("import sys, bsdiff4; a, p, o = sys.argv[1:]; bsdiff4.file_patch(a, o, p)"),
    ),
    Tool("xdelta3", _xdelta("-e"), _xdelta("-d"), needs="xdelta3"),
    Tool(
        "zstd",
        lambda a, b, c: [
            "zstd",
            "-q",
            "-f",
            "--long=31",
            f"--patch-from={a}",
            str(b),
            "-o",
            str(c),
        ],
        lambda a, p, o: [
            "zstd",
            "-q",
            "-f",
            "-d",
            "--long=31",
            f"--patch-from={a}",
            str(p),
            "-o",
            str(o),
        ],
        needs="zstd",
    ),
]


def measure(argv: list[str]) -> Measured:
    """Run a tool to completion in a clean grandchild (procstat.finished); wall time and its peak RSS."""
    done = finished(argv)
    return Measured(done.wall_s, done.max_rss)


def changed_alone(new: Path, changed: list[str]) -> int:
    """The changed tensors compressed on their own: what any patch has to send at least."""
    total = 0
    with new.open("rb") as f:
        for seg in regions(new):
            if seg.name not in changed:
                continue
            for rel in range(0, seg.length, PIECE):
                f.seek(seg.offset + rel)
                piece = f.read(min(PIECE, seg.length - rel))
                total += len(code_piece(piece, seg.width, None).payload)
    return total


def run_tool(tool: Tool, scenario: str, old: Path, new: Path, work: Path, skip: str) -> Row:
    if skip:
        return Row(scenario, tool.name, note=skip)
    patch, out = work / f"{tool.name}.patch", work / f"{tool.name}.out"
    encode = measure(tool.encode(old, new, patch))
    apply = measure(tool.apply(old, patch, out))
    if file_sha256(out) != file_sha256(new):
        raise RuntimeError(f"{tool.name} rebuilt the wrong file in scenario {scenario}")
    size = patch.stat().st_size
    patch.unlink()
    out.unlink()
    return Row(scenario, tool.name, size, encode, apply)


def _skip_reason(tool: Tool, size_mb: int, bsdiff_max_mb: int) -> str:
    if tool.needs and shutil.which(tool.needs) is None:
        return f"skipped: {tool.needs} not installed (apt-get install {tool.needs})"
    if tool.name == "bsdiff4" and size_mb > bsdiff_max_mb:
        return f"skipped: above --bsdiff-max-mb {bsdiff_max_mb} (~1 MB/s and ~17x RAM)"
    return ""


def _mib(n: int) -> str:
    return f"{n / MiB:.2f}"


def _kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def _size(n: int) -> str:
    """Bytes exactly when small (tiny patches differ by bytes), else KiB."""
    return f"{n} B" if n < 10 * 1024 else f"{_kib(n)} KiB"


def _cells(row: Row) -> str:
    if row.patch is None or row.encode is None or row.apply is None:
        return f"| {row.note} | | | | |"
    return (
        f"| {_size(row.patch)} | {row.encode.seconds:.1f} | {row.apply.seconds:.1f} "
        f"| {_mib(row.encode.max_rss)} | {_mib(row.apply.max_rss)} |"
    )


def goals(scenario: str, rows: list[Row], alone: int, largest: int) -> list[str]:
    """The issue's goals for one scenario, each as "ok …" or "MISSED …"."""
    ours = next(r for r in rows if r.tool == "edgeship")
    baselines = [r for r in rows if r.tool != "edgeship" and r.patch is not None]
    assert ours.patch is not None and ours.encode is not None and ours.apply is not None
    checks: list[tuple[bool, str]] = []
    if LETTERS[scenario] in "abcd":
        limit = 1.05 * alone + 64 * 1024
        checks.append(
            (
                ours.patch <= limit,
                f"patch <= 1.05 x changed alone + 64 KiB ({_kib(int(limit))} KiB)",
            )
        )
        checks += [(ours.patch < b.patch, f"smaller than {b.tool}") for b in baselines if b.patch]
    elif baselines:
        best = min(baselines, key=lambda b: b.patch or 0)
        checks.append(
            (ours.patch <= (best.patch or 0), f"no larger than the best baseline ({best.tool})")
        )
    bsdiff = next((b for b in baselines if b.tool == "bsdiff4"), None)
    if bsdiff is not None and bsdiff.encode is not None:
        speedup = bsdiff.encode.seconds / ours.encode.seconds
        checks.append((speedup >= 10, f"encode {speedup:.0f}x faster than bsdiff4"))
    rss_limit = 2 * largest + 128 * MiB
    peak = max(ours.encode.max_rss, ours.apply.max_rss)
    checks.append((peak < rss_limit, f"peak RSS {_mib(peak)} < 2 x largest tensor + 128 MiB"))
    return [("ok     " if passed else "MISSED ") + what for passed, what in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of each F16 model (MiB)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--bsdiff-max-mb", type=int, default=256, help="skip bsdiff4 above this")
    parser.add_argument("--vocab", type=int, default=32000, help="tokens in the GGUF header")
    parser.add_argument("--workdir", type=Path, default=None, help="where pairs are written")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgeship-delta-bench-", dir=args.workdir))
    print(f"# delta benchmark: {args.size_mb} MiB F16 GGUF pairs, vocab {args.vocab}\n")
    print("| scenario | tool | patch | encode s | apply s | encode RSS MiB | apply RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    verdicts: dict[str, list[str]] = {}
    try:
        for scenario in args.scenarios.split(","):
            work = root / scenario
            work.mkdir()
            old, new = work / "old.gguf", work / "new.gguf"
            changed = write_gguf_pair(old, new, scenario, size=args.size_mb * MiB, vocab=args.vocab)
            largest = max(s.length for s in regions(new) if s.kind.value == "tensor")
            alone = changed_alone(new, changed)
            label = f"({LETTERS[scenario]}) {scenario}"
            print(
                f"| {label} | *target {_mib(new.stat().st_size)} MiB, changed tensors alone "
                f"{_mib(alone)} MiB, largest tensor {_mib(largest)} MiB* "
                "| | | | | |",
                flush=True,
            )
            rows = []
            for tool in TOOLS:
                skip = _skip_reason(tool, args.size_mb, args.bsdiff_max_mb)
                rows.append(run_tool(tool, scenario, old, new, work, skip))
                print(f"| {label} | {tool.name} {_cells(rows[-1])}", flush=True)
            verdicts[label] = goals(scenario, rows, alone, largest)
            shutil.rmtree(work)
        print("\n## goals\n")
        for label, lines in verdicts.items():
            print(f"{label}:")
            for line in lines:
                print(f"    {line}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
