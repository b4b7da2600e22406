"""make_patch streams: its memory does not grow with the file or with the size of its header.

Measured in a fresh child process (its own peak RSS, VmHWM, minus its RSS once imports are
done): on a GGUF whose header holds a 400k-token vocabulary (~7 MB, larger than the real
Gemma 3 model's) and whose tokens and name changed, and on a file no model encoder knows.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeship.samples.tensorfiles import write_gguf

MiB = 1 << 20
VOCAB = 400_000
GROWTH_LIMIT = 48 * MiB  # measured 22 MiB; coding the header as one segment took 112 MiB

_CHILD = """
import json, sys
from pathlib import Path
from edgeship.delta import make_patch

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

base = status("VmRSS:")
stats = make_patch(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"base": base, "peak": status("VmHWM:"), "patch": stats.patch_size, "encoder": stats.encoder}))
"""


def growth_of_make_patch(old: Path, new: Path, patch: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(old), str(new), str(patch)],
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["peak"] - figures["base"], figures


def test_make_patch_memory_is_bounded_on_a_large_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    weights = {f"blk.{i}.weight": rng.standard_normal((512, 1024)).astype(np.float16) for i in range(24)}
    tokens = [f"\u2581tok{i}_{rng.integers(1 << 20):x}" for i in range(VOCAB)]
    meta = {"general.architecture": "llama", "general.name": "memory test", "tokenizer.ggml.tokens": tokens}
    old = write_gguf(tmp_path / "old.gguf", weights, meta)
    tokens[VOCAB // 2] = "\u2581edgeship"
    new = write_gguf(tmp_path / "new.gguf", weights, {**meta, "general.name": "memory test, renamed", "tokenizer.ggml.tokens": tokens})
    growth, figures = growth_of_make_patch(old, new, tmp_path / "p.esd")
    assert figures["encoder"] == "gguf"
    assert figures["patch"] < 16 * 1024  # the changes cost kilobytes, not a re-sent header
    assert growth < GROWTH_LIMIT, f"make_patch grew by {growth / MiB:.0f} MiB"


def test_make_patch_memory_is_bounded_on_an_unknown_format(tmp_path: Path) -> None:
    rnd = random.Random(9)
    data = bytearray(rnd.randbytes(48 * MiB))
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(data)
    data[20 * MiB : 20 * MiB + 4] = b"edge"
    new.write_bytes(data)
    growth, figures = growth_of_make_patch(old, new, tmp_path / "p.esd")
    assert figures["encoder"] == "generic" and figures["patch"] < 256 * 1024
    # measured 25 MiB; hashing 8 MiB reads for content-defined chunks took 177 MiB
    assert growth < GROWTH_LIMIT, f"make_patch grew by {growth / MiB:.0f} MiB"
