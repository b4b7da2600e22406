"""make_patch streams: its memory does not grow with the model or with the size of its header.

Measured in a fresh child process (its own peak RSS, VmHWM, minus its RSS once imports are
done), on a GGUF whose header holds a 400k-token vocabulary (~7 MB, larger than the real
Gemma 3 model's) and whose tokens and name changed.
"""

from __future__ import annotations

import json
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


def test_make_patch_memory_is_bounded_on_a_large_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    weights = {f"blk.{i}.weight": rng.standard_normal((512, 1024)).astype(np.float16) for i in range(24)}
    tokens = [f"\u2581tok{i}_{rng.integers(1 << 20):x}" for i in range(VOCAB)]
    meta = {"general.architecture": "llama", "general.name": "memory test", "tokenizer.ggml.tokens": tokens}
    old = write_gguf(tmp_path / "old.gguf", weights, meta)
    tokens[VOCAB // 2] = "\u2581edgeship"
    new = write_gguf(tmp_path / "new.gguf", weights, {**meta, "general.name": "memory test, renamed", "tokenizer.ggml.tokens": tokens})
    done = subprocess.run([sys.executable, "-c", _CHILD, str(old), str(new), str(tmp_path / "p.esd")],
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["encoder"] == "gguf"
    assert figures["patch"] < 16 * 1024  # the changes cost kilobytes, not a re-sent header
    growth = figures["peak"] - figures["base"]
    assert growth < GROWTH_LIMIT, f"make_patch grew by {growth / MiB:.0f} MiB"
