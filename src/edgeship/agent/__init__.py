"""The device agent: check in, download with resume, verify, install atomically, trial, commit or roll back.

Entry points: `Agent` (the loop), `AgentConfig` (its settings), `DeviceStore` (the on-device
store, also used by ``edgeship agent fsck``), `State` (the state machine's states).
The CLI is ``edgeship agent run|status|fsck`` or, lighter, ``python -m edgeship.agent``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Agent", "AgentConfig", "DeviceStore", "State"]

_WHERE = {"Agent": "loop", "AgentConfig": "config", "DeviceStore": "store", "State": "machine"}


def __getattr__(name: str) -> Any:
    # Resolved on first use: the trial's child process imports this package too, and must
    # not pay for httpx and python-tuf just to parse model headers.
    if name in _WHERE:
        return getattr(import_module(f"edgeship.agent.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'edgeship.agent' has no attribute {name!r}")
