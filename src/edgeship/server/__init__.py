"""The edgeship update server: device registry, release distribution, events, metrics."""

from edgeship.server.app import create_app
from edgeship.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
