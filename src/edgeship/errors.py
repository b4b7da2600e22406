"""Every error edgeship raises on purpose, in one tree.

    EdgeshipError                 exit 1   base; the CLI prints one red line, never a traceback
    ├── UsageError                exit 2   bad input from the user (flags, files, versions)
    │   └── ValidationError       exit 2   a model or manifest file is not what it claims
    ├── NotFoundError             exit 3   a release, device, blob or workspace does not exist
    ├── ConflictError             exit 5   already exists / not newer than what exists
    │   └── MissingBaseError      exit 5   a release's adapters need a base model the device lacks
    ├── WorkspaceError            exit 1   operator workspace missing or damaged
    ├── StoreError                exit 1   content-addressed blob store
    ├── TrustError                exit 4   signatures, TUF metadata, hashes: refuse to install
    ├── DeltaError                exit 1   delta encode/apply (a bad patch never yields a file)
    ├── RolloutError              exit 1   rollout engine and plans
    ├── ServerError               exit 1   talking to / running the update server
    ├── AgentError                exit 1   device agent
    ├── RuntimeBackendError       exit 1   on-device inference runtime
    ├── OptimizeError             exit 1   profiles, estimates, quantization
    └── LearnError                exit 1   on-device training: data, room, the trainer

Messages say what went wrong and what to do next. ``hint`` carries the "what next".
"""

from __future__ import annotations


class EdgeshipError(Exception):
    """Base of every expected edgeship failure."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgeshipError):
    exit_code = 2


class ValidationError(UsageError):
    pass


class NotFoundError(EdgeshipError):
    exit_code = 3


class ConflictError(EdgeshipError):
    exit_code = 5


class MissingBaseError(ConflictError):
    pass


class WorkspaceError(EdgeshipError):
    pass


class StoreError(EdgeshipError):
    pass


class TrustError(EdgeshipError):
    exit_code = 4


class DeltaError(EdgeshipError):
    pass


class RolloutError(EdgeshipError):
    pass


class ServerError(EdgeshipError):
    pass


class AgentError(EdgeshipError):
    pass


class RuntimeBackendError(EdgeshipError):
    pass


class OptimizeError(EdgeshipError):
    pass


class LearnError(EdgeshipError):
    pass
