"""Fleet simulator: virtual devices on a simulated clock, driven by the real rollout engine."""

from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.runner import SimResult, simulate
from edgeship.sim.virtual import VirtualFleet

__all__ = ["Faults", "SimConfig", "SimResult", "VirtualFleet", "simulate"]
