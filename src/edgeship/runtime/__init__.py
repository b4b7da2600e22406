"""On-device inference: serves the release the agent installed, swaps releases without dropping requests.

Entry points: :class:`RuntimeConfig` and :func:`serve` (what `edgeship runtime serve` runs),
:class:`RuntimeClient` and :func:`evaluate` (what the agent uses), :class:`BackgroundServer`
(tests and benchmarks).
"""

from typing import TYPE_CHECKING, Any

from edgeship.runtime.client import RuntimeClient
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.health import HealthReport, HealthVerdict, evaluate
from edgeship.runtime.swap import SwapOutcome

if TYPE_CHECKING:
    from edgeship.runtime.server import BackgroundServer, serve


def __getattr__(name: str) -> Any:
    # The server side needs FastAPI and uvicorn; the agent, which only uses the client, does not.
    if name in ("BackgroundServer", "serve"):
        from edgeship.runtime import server

        return getattr(server, name)
    raise AttributeError(f"module 'edgeship.runtime' has no attribute {name!r}")

__all__ = ["BackgroundServer", "HealthReport", "HealthVerdict", "RuntimeClient", "RuntimeConfig", "SwapOutcome",
           "evaluate", "serve"]
