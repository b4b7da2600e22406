"""Model-aware delta updates: ship only the tensors (or chunks) that changed.

A patch (`edgeship-delta/1`) turns one exact source file into one exact target file; the
applier checks both digests and never leaves a wrong file behind.
"""

from edgeship.delta.apply import apply_patch
from edgeship.delta.encode import ENCODERS, make_patch
from edgeship.delta.stats import PatchStats, SegmentStats, read_stats

__all__ = ["ENCODERS", "PatchStats", "SegmentStats", "apply_patch", "make_patch", "read_stats"]
