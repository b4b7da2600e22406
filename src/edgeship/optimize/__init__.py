"""Fit models to devices: profiles, memory estimates, quantization, evaluation, selection."""

from edgeship.formats import ModelFacts, read_facts
from edgeship.optimize.memory import MemoryEstimate, estimate_memory
from edgeship.optimize.pipeline import optimize_gguf
from edgeship.optimize.profiles import Profile, load_profiles
from edgeship.optimize.quantize import quantize
from edgeship.optimize.report import Report, Variant
from edgeship.optimize.select import Candidate, Choice, choose

__all__ = [
    "Candidate",
    "Choice",
    "MemoryEstimate",
    "ModelFacts",
    "Profile",
    "Report",
    "Variant",
    "choose",
    "estimate_memory",
    "load_profiles",
    "optimize_gguf",
    "quantize",
    "read_facts",
]
