"""What `edgeship optimize` found: the variants, what they cost and give, and the choices.

Written as ``report.json`` (format ``edgeship-optimize/1``) next to the variants.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeship.optimize.profiles import Profile
from edgeship.optimize.select import Candidate, Choice

REPORT_FORMAT = "edgeship-optimize/1"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class Variant:
    name: str  # "Q4_K_M", "int8", or the source's own type ("F32", "float")
    path: Path
    source: bool  # the unchanged input model
    file_bytes: int
    bits_per_weight: float
    memory: int  # estimated bytes at the report's context, runtime included
    memory_detail: dict[str, int] = field(default_factory=dict)
    quantize_seconds: float | None = None
    kl_divergence: float | None = None
    perplexity: float | None = None
    # Everything else measured: tokens/s, top-1 agreement, ONNX output errors, tensor types.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.name, self.bits_per_weight, self.memory, self.kl_divergence, self.perplexity)

    @property
    def quantize_mb_per_s(self) -> float | None:
        if not self.quantize_seconds or self.source:
            return None
        return self.metrics.get("source_bytes", 0) / 1e6 / self.quantize_seconds


@dataclass(frozen=True)
class PushedRelease:
    name: str
    version: str
    variant: str
    release_id: str
    profiles: tuple[str, ...]
    requirements: dict[str, Any]


@dataclass
class Report:
    source: Path
    kind: str  # "gguf" or "onnx"
    ctx: int | None  # context the memory figures are for (GGUF)
    headroom: float
    profiles: list[Profile]
    variants: list[Variant]
    choices: list[Choice]
    warnings: list[str] = field(default_factory=list)
    releases: list[PushedRelease] = field(default_factory=list)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "source": self.source.name,
            "kind": self.kind,
            "ctx": self.ctx,
            "headroom": self.headroom,
            "warnings": self.warnings,
            "variants": [
                {**asdict(v), "path": v.path.name, "quantize_mb_per_s": v.quantize_mb_per_s} for v in self.variants
            ],
            "profiles": [p.to_json() for p in self.profiles],
            "choices": [asdict(c) for c in self.choices],
            "releases": [asdict(r) for r in self.releases],
        }

    def write(self, directory: Path) -> Path:
        path = directory / REPORT_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n")
        return path
