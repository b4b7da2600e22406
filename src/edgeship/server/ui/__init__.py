"""The operator's web dashboard at ``/ui``: server-rendered pages over the same library calls as the API."""

from edgeship.server.ui.routes import mount

__all__ = ["mount"]
