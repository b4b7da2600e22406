"""Human units on the command line: sizes (2GiB), durations (30m, 7d), rates (2MB/s)."""

from __future__ import annotations

import re

from edgeship.errors import UsageError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str) -> int:
    """'2GiB' -> 2147483648, '512MB' -> 512000000, '1024' -> 1024."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise UsageError(f"size {text!r} not understood", hint="write e.g. 512MiB, 2GiB, 4GB or a byte count")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """'30m' -> 1800.0, '1h30m' -> 5400.0, '45' -> 45.0 (seconds)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip().replace(" ", ""):
        raise UsageError(f"duration {text!r} not understood", hint="write e.g. 45s, 30m, 1h30m, 7d")
    return sum(float(n) * _DURATION_UNITS[u or "s"] for n, u in parts)


def parse_rate(text: str) -> int:
    """'2MB/s' -> 2000000 bytes per second."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    return parse_size(body)
