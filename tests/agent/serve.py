"""Run the real update server (settings from EDGESHIP_* variables) behind the fault injector.

    python -m tests.agent.serve     (used by the agent's fault tests as a separate process)
"""

from __future__ import annotations

import uvicorn

from edgeship.server.app import app_from_env
from edgeship.server.settings import ServerSettings
from tests.agent.faults import FaultInjector

if __name__ == "__main__":
    settings = ServerSettings.load()
    uvicorn.run(FaultInjector(app_from_env()), host=settings.host, port=settings.port, log_level="warning")
