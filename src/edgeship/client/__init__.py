"""The operator's HTTP client for the update server (what the CLI uses)."""

from edgeship.client.operator import OperatorClient
from edgeship.client.publish import PushReport, push_repository

__all__ = ["OperatorClient", "PushReport", "push_repository"]
