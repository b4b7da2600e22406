"""Input and output paths, with one clear message for each way they can be wrong."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from edgeship.errors import ValidationError


def require_file(path: Path, role: str) -> None:
    """Refuse a ``path`` that is missing or a directory, naming its ``role`` ("old file", "GGUF file")."""
    if path.is_dir():
        raise ValidationError(f"{role} {path} is a directory, not a file", hint="give the path of the file itself")
    if not path.exists():
        raise ValidationError(f"{role} {path} does not exist", hint="check the path")


def require_output(path: Path, role: str) -> None:
    """Refuse an output path that is an existing directory (it would be replaced by a file)."""
    if path.is_dir():
        raise ValidationError(f"{role} {path} is a directory", hint="give a file path to write to")


def open_model(path: Path, kind: str) -> BinaryIO:
    """``path`` opened for binary reading, or a ValidationError that says why it cannot be."""
    path = Path(path)
    require_file(path, f"{kind} file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise ValidationError(f"cannot read {kind} file {path}: {exc.strerror or exc}", hint="check the file's permissions") from None
