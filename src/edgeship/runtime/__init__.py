"""On-device inference: serves the release the agent installed, swaps releases without dropping requests.

Entry points: :class:`RuntimeConfig` and :func:`serve` (what `edgeship runtime serve` runs),
:class:`RuntimeClient` and :func:`evaluate` (what the agent uses), :class:`BackgroundServer`
(tests and benchmarks).
"""

from edgeship.runtime.client import RuntimeClient
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.health import HealthReport, HealthVerdict, evaluate
from edgeship.runtime.server import BackgroundServer, serve
from edgeship.runtime.swap import SwapOutcome

__all__ = ["BackgroundServer", "HealthReport", "HealthVerdict", "RuntimeClient", "RuntimeConfig", "SwapOutcome",
           "evaluate", "serve"]
