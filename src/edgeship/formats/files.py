"""Opening a model file, with one clear message for each way that can fail."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from edgeship.errors import ValidationError


def open_model(path: Path, kind: str) -> BinaryIO:
    """``path`` opened for binary reading; a missing file, a directory or an unreadable file is a ValidationError."""
    path = Path(path)
    if path.is_dir():
        raise ValidationError(f"{path} is a directory, not a {kind} file", hint="give the path of the model file itself")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file", hint="check the path") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}", hint="check the file's permissions") from None
