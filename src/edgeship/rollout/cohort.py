"""Deterministic cohorts: where a device falls in a rollout, from hashes alone.

A device's value depends only on the rollout ID and its own ID, so a stage of ``p``
percent (every device with value < p/100) contains every smaller stage, and adding
devices to the fleet never moves the ones already there.
"""

from __future__ import annotations

import hashlib

# 53 bits: the mantissa of a float, so every value maps exactly and stays below 1.0.
_BITS = 53
_SCALE = float(1 << _BITS)


def cohort_value(rollout_id: str, device_id: str) -> float:
    """A uniform-looking, stable value in [0, 1) for this device in this rollout."""
    # The NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.sha256(f"{rollout_id}\0{device_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _BITS)) / _SCALE


def in_share(rollout_id: str, device_id: str, percent: float) -> bool:
    """Whether the device belongs to the first ``percent`` % of the rollout's cohort order."""
    return cohort_value(rollout_id, device_id) < percent / 100.0
